"""Running a coroutine to its end from a test, whatever loop the session already runs."""

from __future__ import annotations

import asyncio
import concurrent.futures


def run(coroutine, timeout: float = 120):
    """`coroutine`'s result, run on a loop of its own in a thread of its own: the browser tests'
    Playwright keeps a loop running in the main thread for the rest of the session."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, asyncio.wait_for(coroutine, timeout=timeout)).result()

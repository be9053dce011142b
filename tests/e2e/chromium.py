"""Where the browser is and how to start it on these machines (shared by the tests and screenshot.py)."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM = os.environ.get("MINIGPT4_E2E_CHROMIUM", "/usr/bin/chromium")
# Flags that work as root on a machine with no outside network: without the background-networking
# ones Chromium keeps opening connections that are refused here.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
MISSING = (f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's Chromium "
           "(`apt-get install -y chromium`; .ci/run installs it). Playwright cannot download its own here.")


def launch(playwright: Playwright) -> Browser:
    """Start Chromium; raises FileNotFoundError with MISSING when it is not installed.

    Playwright gives every launch a new, empty profile (its own --user-data-dir in the temp folder)
    and refuses a --user-data-dir flag of ours, so no profile is ever shared between runs.
    """
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(MISSING)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)

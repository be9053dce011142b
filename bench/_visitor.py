"""A browser's visit to a Gradio chat page, over Gradio's own HTTP protocol, as asyncio tasks.

What Chromium sends for this app (recorded with Playwright): GET the page (its config is in
it), open the session's heartbeat stream, run the page's load events, upload the image, run the
image's change events, then Send: the unqueued `send` event, and on its success the queued
`respond` event (queue/join, then the session's queue/data stream until `process_completed`).
Static assets are not fetched (a returning browser has them cached; both apps serve the same).

Each visitor keeps its own cookies, as a browser does: behind a balancer that pins a session to
a replica by a cookie, every request of the visit goes to the same replica.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from gradio_client.utils import apply_diff


@dataclass(frozen=True)
class Page:
    """What every visit to one app shares, read once from its config."""

    load: tuple[dict, ...]  # events the page runs when it opens
    on_image: tuple[dict, ...]  # events an uploaded image triggers
    send: dict
    respond: dict
    image: int
    prompt: int
    chatbot: int
    values: dict[int, Any]  # each component's value as the page starts
    states: frozenset[int]  # gr.State: held by the server, sent as null

    @classmethod
    def of(cls, config: dict, settings: dict[str, Any] | None = None) -> "Page":
        """The page of `config`; `settings` sets visible controls by label (a visitor's choices)."""
        deps = config["dependencies"]
        send = next(d for d in deps if d.get("api_name") == "send")
        respond = next(d for d in deps if d.get("trigger_after") == send["id"])
        image, prompt, chatbot = send["inputs"][0], send["inputs"][1], send["outputs"][0]
        components = config["components"]
        values = {c["id"]: c.get("props", {}).get("value") for c in components}
        for label, value in (settings or {}).items():
            values[next(c["id"] for c in components if c.get("props", {}).get("label") == label
                        and c.get("props", {}).get("visible", True) is not False)] = value
        return cls(load=tuple(d for d in deps if any(t[1] == "load" for t in d["targets"])),
                   on_image=tuple(d for d in deps if any(t[0] == image and t[1] in ("change", "upload")
                                                         for t in d["targets"])),
                   send=send, respond=respond, image=image, prompt=prompt, chatbot=chatbot, values=values,
                   states=frozenset(c["id"] for c in components if c.get("type") == "state"))


@dataclass
class Visit:
    """What one visitor saw; times are time.perf_counter()."""

    started: float = 0.0
    page_loaded: float | None = None  # page fetched and its load events answered
    asked: float | None = None  # Send pressed
    first_word: float | None = None  # the answer's first word on screen
    done: float | None = None  # the answer complete
    answer: str = ""
    upload_path: str = ""
    error: str | None = None
    log: list[str] = field(default_factory=list)

    @property
    def first_word_s(self) -> float | None:
        return None if self.first_word is None or self.asked is None else self.first_word - self.asked

    @property
    def total_s(self) -> float | None:
        return None if self.done is None or self.asked is None else self.done - self.asked


def answer_of(chat: list) -> str:
    """The newest answer's text in a messages Chatbot (status blocks and notes have a title)."""
    for message in reversed(chat or []):
        if message.get("role") == "assistant" and not (message.get("metadata") or {}).get("title"):
            content = message.get("content")
            if isinstance(content, list):  # Gradio 6's postprocessed form: a list of parts
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return content if isinstance(content, str) else ""
    return ""


def connections() -> httpx.AsyncHTTPTransport:
    """Connections for many visitors: no limit on their number, and an idle one is not reused
    after 1 s, well before the server's keep-alive timeout (uvicorn: 5 s) closes it. (A browser
    retries a request that meets a connection closed under it; httpx reports an error.)"""
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None, max_keepalive_connections=None,
                                                        keepalive_expiry=1.0))


class Visitor:
    """One browser tab on `url` (ends with /), sharing `transport` with other visitors."""

    def __init__(self, url: str, page: Page, transport: httpx.AsyncBaseTransport, timeout: float = 120):
        self.url = url
        self.page = page
        self.hash = secrets.token_hex(6)
        self.values = dict(page.values)
        self.visit = Visit()
        # Its own cookie jar; the transport (connections) is shared, as tabs of one browser share them.
        self.http = httpx.AsyncClient(transport=transport, timeout=timeout)
        self._heartbeat: httpx.Response | None = None

    async def open(self) -> None:
        """Load the page: the HTML, the heartbeat stream, the load events."""
        self.visit.started = time.perf_counter()
        (await self.http.get(self.url)).raise_for_status()
        request = self.http.build_request("GET", f"{self.url}gradio_api/heartbeat/{self.hash}")
        self._heartbeat = await self.http.send(request, stream=True)
        self._heartbeat.raise_for_status()
        for dep in self.page.load:
            await self._run(dep, event_data=True)
        self.visit.page_loaded = time.perf_counter()

    async def add_image(self, name: str, data: bytes, mime: str = "image/jpeg") -> None:
        answer = await self.http.post(f"{self.url}gradio_api/upload", params={"upload_id": secrets.token_hex(5)},
                                      files={"files": (name, data, mime)})
        answer.raise_for_status()
        path = answer.json()[0]
        self.visit.upload_path = path
        self.values[self.page.image] = {"path": path, "url": f"{self.url}gradio_api/file={path}", "orig_name": name,
                                        "size": len(data), "mime_type": mime, "meta": {"_type": "gradio.FileData"}}
        for dep in self.page.on_image:
            await self._run(dep)

    async def ask(self, question: str) -> None:
        """Type the question and press Send; returns when the answer is complete."""
        self.values[self.page.prompt] = question
        self.visit.asked = time.perf_counter()
        if not await self._run(self.page.send, event_data=True):
            raise RuntimeError(f"send failed: {self.visit.log[-1]}")
        await self._queued(self.page.respond, trigger=self.page.send["targets"][0][0])

    async def close(self) -> None:
        """Close the tab: its heartbeat ends. (The shared connections are their owner's to close.)"""
        if self._heartbeat is not None:
            await self._heartbeat.aclose()

    def _data(self, dep: dict) -> list:
        return [None if i in self.page.states else self.values.get(i) for i in dep["inputs"]]

    def _apply(self, dep: dict, outputs: list) -> None:
        for i, value in zip(dep["outputs"], outputs):
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" in value:
                    self.values[i] = value["value"]
            elif i not in self.page.states:
                self.values[i] = value

    async def _run(self, dep: dict, event_data: bool = False) -> bool:
        """An unqueued event; its outputs update the page. False when it failed."""
        body = {"data": self._data(dep), "fn_index": dep["id"], "trigger_id": dep["targets"][0][0],
                "session_hash": self.hash}
        if event_data:
            body["event_data"] = None
        answer = await self.http.post(f"{self.url}gradio_api/run/predict", json=body)
        if answer.status_code != 200:
            self.visit.log.append(f"{dep.get('api_name')}: HTTP {answer.status_code} {answer.text[:300]}")
            return False
        self._apply(dep, answer.json()["data"])
        return True

    async def _queued(self, dep: dict, trigger: int) -> None:
        """A queued event, read from the session's stream as the page reads it."""
        joined = await self.http.post(f"{self.url}gradio_api/queue/join", json={
            "data": self._data(dep), "event_data": None, "fn_index": dep["id"], "trigger_id": trigger,
            "session_hash": self.hash})
        if joined.status_code != 200:
            raise RuntimeError(f"queue/join: HTTP {joined.status_code} {joined.text[:300]}")
        event_id = joined.json()["event_id"]
        chat_at = dep["outputs"].index(self.page.chatbot)
        chat: list | None = None  # only the chat is followed: the reader's own work stays small
        async with self.http.stream("GET", f"{self.url}gradio_api/queue/data",
                                    params={"session_hash": self.hash}) as stream:
            stream.raise_for_status()
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") not in (None, event_id):
                    continue
                kind = message.get("msg")
                if kind == "process_generating":
                    update = message["output"]["data"][chat_at]
                    chat = update if chat is None else apply_diff(chat, update)
                    if self.visit.first_word is None and answer_of(chat).strip():
                        self.visit.first_word = time.perf_counter()
                elif kind == "process_completed":
                    self.visit.done = time.perf_counter()
                    output = message.get("output") or {}
                    if not message.get("success", False):
                        raise RuntimeError(f"respond failed: {output.get('error') or output}")
                    final = output.get("data") or []
                    self._apply(dep, final)
                    self.visit.answer = answer_of(self.values.get(self.page.chatbot) or [])
                    return
                elif kind in ("close_stream", "unexpected_error"):
                    raise RuntimeError(f"the stream ended with {kind}: {message}")
        raise RuntimeError("the stream ended before the answer did")

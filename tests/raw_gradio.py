"""Gradio's own HTTP protocol, as a browser speaks it: for the app's private events (the chat, the
history, Compare) and for requests gradio_client cannot make (one header on several lines)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import httpx

from minigpt4_ui.replicate_api.sse import iter_events

Headers = list[tuple[str, str]]


class Session:
    """One browser session of a running app: its config, and events sent as that session."""

    def __init__(self, url: str, headers: Headers | None = None):
        self.url = url
        self.hash = secrets.token_hex(6)
        self.headers = headers or []
        self.config = httpx.get(url + "config", timeout=30).json()
        self._values = {c["id"]: c.get("props", {}).get("value") for c in self.config["components"]}

    def dependency(self, api_name: str) -> dict:
        return next(d for d in self.config["dependencies"] if d.get("api_name") == api_name)

    def defaults(self, api_name: str) -> list:
        """The event's inputs as the page starts, in order."""
        return [self._values.get(i) for i in self.dependency(api_name)["inputs"]]

    def component(self, **props) -> dict:
        """The first component with these properties (e.g. `label="…"`)."""
        return next(c for c in self.config["components"]
                    if all(c.get("props", {}).get(k) == v for k, v in props.items()))

    def upload(self, path: str | Path) -> dict:
        """A file uploaded as the page uploads it, as the FileData an event takes."""
        with open(path, "rb") as handle:
            answer = httpx.post(self.url + "gradio_api/upload", files={"files": (Path(path).name, handle)},
                                timeout=30)
        return {"path": answer.json()[0], "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}

    def _post(self, path: str, body: dict) -> httpx.Response:
        # json.dumps escapes what is not ASCII, so a lone surrogate travels as a browser sends it
        # ("\ud800"); httpx's own encoding would refuse it.
        answer = httpx.post(self.url + path, content=json.dumps(body), timeout=60,
                            headers=[("Content-Type", "application/json"), *self.headers])
        answer.raise_for_status()
        return answer

    def run(self, api_name: str, data: list) -> list:
        """An unqueued event's outputs."""
        return self._post("gradio_api/run/predict", {
            "fn_index": self.dependency(api_name)["id"], "session_hash": self.hash, "data": data}).json()["data"]

    def queued(self, api_name: str, data: list, event_data: dict | None = None) -> dict:
        """A queued event run to its end: the `process_completed` message (`output`, `success`)."""
        dep = self.dependency(api_name)
        self._post("gradio_api/queue/join", {
            "data": data, "fn_index": dep["id"], "session_hash": self.hash, "event_data": event_data,
            "trigger_id": dep["targets"][0][0] if dep["targets"] else None})
        with httpx.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": self.hash},
                          timeout=60) as stream:
            for event in iter_events(stream.iter_raw()):
                message = json.loads(event.data)
                if message.get("msg") == "process_completed":
                    return message
        raise AssertionError(f"{api_name} never completed")

"""The request behind an answer, as JSON, and as curl and Python that run as shown on Replicate.

The snippets always address Replicate itself with `$REPLICATE_API_TOKEN`, and send the visitor's
own image file the way a person would: never the host's token, API address or embedded server.
"""

from __future__ import annotations

import json
import mimetypes
import shlex
from typing import Any, NamedTuple

from ..shared.facts import REPLICATE_BASE_URL as REPLICATE_API
# A data URI is hundreds of kilobytes; the panel shows its start and its size instead.
_SHOWN_URI_CHARS = 48
_IMAGE_SLOT = "@@IMAGE@@"


class Request(NamedTuple):
    """The request behind an answer, as the View request panel shows it."""

    json: str
    curl: str
    python: str


def request(inputs: dict[str, Any], *, model: str, version: str, image_file: str) -> Request:
    """The three views of one request."""
    return Request(request_json(inputs, version), curl(inputs, version=version, image_file=image_file),
                   python(inputs, model=model, version=version, image_file=image_file))


def displayed_input(inputs: dict[str, Any]) -> dict[str, Any]:
    """The input as sent, with a data-URI image shortened for display."""
    image = inputs.get("image", "")
    if isinstance(image, str) and image.startswith("data:"):
        image = f"{image[:_SHOWN_URI_CHARS]}… ({len(image):,} characters in all)"
    return {**inputs, "image": image}


def request_json(inputs: dict[str, Any], version: str) -> str:
    return json.dumps({"version": version, "input": displayed_input(inputs)}, indent=2, ensure_ascii=False)


def curl(inputs: dict[str, Any], *, version: str, image_file: str) -> str:
    """A shell script for Replicate: the image file is read into a data URI, the token from the environment."""
    mime = mimetypes.guess_type(image_file)[0] or "image/jpeg"
    body = json.dumps({"version": version, "input": {**inputs, "image": _IMAGE_SLOT}}, ensure_ascii=False)
    quoted = shlex.quote(body).replace(_IMAGE_SLOT, "'\"$IMAGE\"'")
    # The body goes through stdin: a photo's data URI is longer than one command-line argument may be.
    return (f'IMAGE="data:{mime};base64,$(base64 < {shlex.quote(image_file)} | tr -d \'\\n\')"\n'
            f"printf '%s' {quoted} |\n"
            f"curl -s -X POST {REPLICATE_API}/v1/predictions \\\n"
            '  -H "Authorization: Bearer $REPLICATE_API_TOKEN" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            '  -H "Prefer: wait" \\\n'
            "  --data-binary @-")


def python(inputs: dict[str, Any], *, model: str, version: str, image_file: str) -> str:
    """A call with the official client, which reads REPLICATE_API_TOKEN and uploads the file itself."""
    lines = [f"        {'image'!r}: open({image_file!r}, 'rb'),"]
    lines += [f"        {name!r}: {value!r}," for name, value in inputs.items() if name != "image"]
    arguments = "\n".join(lines)
    return (f"import replicate\n\noutput = replicate.run(\n    {f'{model}:{version}'!r},\n"
            f"    input={{\n{arguments}\n    }},\n)\nprint(output)")

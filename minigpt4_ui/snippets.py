"""The request behind an answer, shown as JSON, curl and Python, with the token left out."""

from __future__ import annotations

import json
from typing import Any

# A data URI is hundreds of kilobytes; the panel shows its start and its size instead.
_SHOWN_URI_CHARS = 48


def displayed_input(inputs: dict[str, Any]) -> dict[str, Any]:
    """The input as sent, with a data-URI image shortened for display."""
    image = inputs.get("image", "")
    if isinstance(image, str) and image.startswith("data:"):
        image = f"{image[:_SHOWN_URI_CHARS]}… ({len(image):,} characters in all)"
    return {**inputs, "image": image}


def request_json(inputs: dict[str, Any], version: str) -> str:
    return json.dumps({"version": version, "input": displayed_input(inputs)}, indent=2, ensure_ascii=False)


def curl(inputs: dict[str, Any], *, base_url: str, version: str) -> str:
    """An equivalent curl command; the token is read from the environment, never written out."""
    body = json.dumps({"version": version, "input": displayed_input(inputs)}, ensure_ascii=False)
    return (f"curl -s -X POST {base_url}/v1/predictions \\\n"
            '  -H "Authorization: Bearer $REPLICATE_API_TOKEN" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            '  -H "Prefer: wait" \\\n'
            f"  -d {_shell_quote(body)}")


def python(inputs: dict[str, Any], *, base_url: str, model: str, version: str) -> str:
    """An equivalent call with the official client, which reads REPLICATE_API_TOKEN itself."""
    shown = displayed_input(inputs)
    arguments = ",\n".join(f"        {name!r}: {value!r}" for name, value in shown.items())
    client = ("replicate.Client()" if base_url == "https://api.replicate.com"
              else f"replicate.Client(base_url={base_url!r})")
    return (f"import replicate\n\nclient = {client}\n"
            f"output = client.run(\n    {f'{model}:{version}'!r},\n    input={{\n{arguments},\n    }},\n)\n"
            "print(output)")


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"

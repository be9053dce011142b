"""Model output made safe to render as markdown in every visitor's browser.

The chat renders answers as markdown and sanitises scripts and event handlers, but an image
(`![](http://…)`, `<img src=…>`) would still make each browser fetch its URL as the answer
appears: a model steered by text inside a picture could leak the conversation that way. So, outside
code, a markdown image becomes a plain link (🖼 and its alt text) and `<` becomes `&lt;`, which
shows raw HTML as text; code, lists, emphasis and links render as before.
"""

from __future__ import annotations

import re

# What is kept exactly as written: fenced code blocks, to their closing fence (or to the end
# while the answer streams), and one-line code spans. When in doubt this errs towards prose
# (escaped; at worst a code span shows "&lt;"), never towards code: a backtick fence's info may not
# hold a backtick, a span may not start after a backslash or hold a `|` (GFM splits table cells
# first), and a closing fence here is never later than markdown's.
_CODE = re.compile(r"(?ms)^ {0,3}(?P<fence>`{3,}(?=[^`\n]*$)|~{3,}).*?(?:^ {0,3}(?P=fence)[`~]*[ \t]*$|\Z)"
                   r"|(?<![`\\])(?P<ticks>`+)(?!`)[^\n|]+?(?<!`)(?P=ticks)(?!`)")


def markdown(text: str) -> str:
    """`text` with images turned into links and HTML into text, outside code."""
    out, last = [], 0
    for code in _CODE.finditer(text):
        out += [_defuse(text[last:code.start()]), code.group()]
        last = code.end()
    out.append(_defuse(text[last:]))
    return "".join(out)


def code_block(text: str) -> str:
    """`text` as a fenced code block that nothing inside it can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _defuse(prose: str) -> str:
    return prose.replace("<", "&lt;").replace("![", "[🖼 ")

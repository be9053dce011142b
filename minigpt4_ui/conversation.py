"""Multi-turn chat over a single-turn API: earlier turns folded into one prompt, within a budget.

MiniGPT-4 builds its LLM prompt as `…###Human: <Img><ImageHere></Img> {prompt}###Assistant:`, so
earlier turns written with the same separators reach the model as a real conversation. Like the
model itself, the budget keeps the newest context: `max_length` bounds prompt plus answer, so
what remains after `max_new_tokens` (less the fixed template) is what earlier turns may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

ASSISTANT = "###Assistant: "
HUMAN = "###Human: "
# LLaMA's tokenizer averages about four characters of English text per token.
CHARS_PER_TOKEN = 4
# The system sentence, the 32 image query tokens and the separators around the prompt.
TEMPLATE_TOKENS = 80


@dataclass(frozen=True)
class Turn:
    """One finished question and its answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class Folded:
    """The prompt to send, and how many earlier turns it carries or had to leave out."""

    prompt: str
    kept: int
    dropped: int


def fold(turns: Sequence[Turn], question: str, *, max_length: int, max_new_tokens: int,
         max_chars: int | None = None) -> Folded:
    """Prefix `question` with as many of the newest earlier turns as the budget allows.

    `max_chars`, when given, also caps the whole prompt's length in characters.
    """
    budget = (max_length - max_new_tokens - TEMPLATE_TOKENS) * CHARS_PER_TOKEN
    if max_chars is not None:
        budget = min(budget, max_chars)
    budget -= len(question)
    kept: list[str] = []
    for turn in reversed(turns):
        piece = f"{turn.question}{ASSISTANT}{turn.answer}{HUMAN}"
        if len(piece) > budget:
            break
        budget -= len(piece)
        kept.append(piece)
    return Folded(prompt="".join(reversed(kept)) + question, kept=len(kept),
                  dropped=len(turns) - len(kept))

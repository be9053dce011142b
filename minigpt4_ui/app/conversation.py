"""Multi-turn chat over a single-turn API: earlier turns folded into one prompt, within a budget,
or handed to a model's own `history` input when it has one (`model_inputs`).

MiniGPT-4 builds its LLM prompt as `…###Human: <Img><ImageHere></Img> {prompt}###Assistant:`, so
earlier turns written with the same separators reach the model as a real conversation. Like the
model itself, the budget keeps the newest context: `max_length` bounds prompt plus answer, so
what remains after `max_new_tokens` (less the fixed template) is what earlier turns may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..shared.facts import ASSISTANT, HUMAN
from ..shared.model_schema import ModelSpec
from ..shared.schema import MODEL as MINIGPT4

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


# A neutral transcript for models without a `history` input: their own chat templates are not
# published in their schemas, and plain role labels are what instruction-tuned models read best
# when a template is unknown. A model's `###` separators would be wrong for anything but MiniGPT-4.
USER = "User: "
ASSISTANT_LABEL = "Assistant: "
# A public demo's cap on what one turn sends, as for MiniGPT-4's prompt.
MAX_PROMPT_CHARS = 16_000


@dataclass(frozen=True)
class TurnInputs:
    """A turn's inputs (the image aside), and how many earlier turns they carry or left out."""

    inputs: dict
    kept: int
    dropped: int


def model_inputs(spec: ModelSpec, turns: Sequence[Turn], question: str, params: Mapping[str, Any],
                 *, max_chars: int = MAX_PROMPT_CHARS) -> TurnInputs:
    """The inputs for asking `question` after `turns`, in the way `spec`'s model takes earlier turns.

    - a `history` input (list of strings) gets every earlier message, alternating roles;
    - MiniGPT-4 gets them folded into the prompt with its `###Human:`/`###Assistant:` separators,
      within `max_length` (see `fold`);
    - a model with blip-2's `context` string ("previous questions and answers") gets them there
      in BLIP-2's own `Question: … Answer: …` form, unless the caller set a context;
    - any other model gets a `User:`/`Assistant:` transcript ahead of the question.
    Folding keeps the newest turns that fit in `max_chars`.
    """
    inputs = dict(params)
    if spec.history:
        inputs[spec.history] = [text for turn in turns for text in (turn.question, turn.answer)]
        inputs[spec.question] = question
        return TurnInputs(inputs, kept=len(turns), dropped=0)
    if spec.model == MINIGPT4:
        defaults = spec.defaults()
        folded = fold(turns, question, max_chars=max_chars,
                      max_length=int(inputs.get("max_length", defaults["max_length"])),
                      max_new_tokens=int(inputs.get("max_new_tokens", defaults["max_new_tokens"])))
        inputs[spec.question] = folded.prompt
        return TurnInputs(inputs, kept=folded.kept, dropped=folded.dropped)
    if _takes_context(spec) and not inputs.get("context"):
        pieces = _newest([f"Question: {t.question} Answer: {t.answer}" for t in turns],
                         max_chars - len(question), separator=" ")
        if pieces:
            inputs["context"] = " ".join(pieces)
        inputs[spec.question] = question
        return TurnInputs(inputs, kept=len(pieces), dropped=len(turns) - len(pieces))
    pieces = _newest([f"{USER}{t.question}\n{ASSISTANT_LABEL}{t.answer}\n" for t in turns],
                     max_chars - len(USER) - len(question))
    inputs[spec.question] = "".join(pieces) + (f"{USER}{question}" if pieces else question)
    return TurnInputs(inputs, kept=len(pieces), dropped=len(turns) - len(pieces))


def _takes_context(spec: ModelSpec) -> bool:
    return any(f.name == "context" and f.type is str for f in spec.fields)


def _newest(pieces: list[str], budget: int, *, separator: str = "") -> list[str]:
    """As many of the newest pieces as fit in `budget` characters, oldest first."""
    kept: list[str] = []
    for piece in reversed(pieces):
        budget -= len(piece) + len(separator)
        if budget < 0:
            break
        kept.append(piece)
    return kept[::-1]

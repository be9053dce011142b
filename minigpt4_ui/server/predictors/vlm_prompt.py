"""The one place a local vision-language model's prompt is made, for every engine that runs one.

MiniGPT-4's folded prompt (`q1###Assistant: a1###Human: q2`) becomes chat messages, the model's
own chat template renders them, and MiniGPT-4's length parameters are fitted to what the prompt
leaves. The transformers engine (`smolvlm.py`) and the ONNX Runtime engine (`smolvlm_onnx.py`)
both call `render` and `fit_new_tokens`, so one question gives both the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...shared.facts import ASSISTANT, HUMAN
from . import PredictionError

# SmolVLM-Instruct's chat template, for a compatible folder that ships none.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class Budget:
    """How many new tokens one answer may have, and why it is fewer than asked, if it is."""

    max_new_tokens: int
    notes: list[str] = field(default_factory=list)


def messages_from_prompt(prompt: str) -> list[dict]:
    """MiniGPT-4's folded prompt as chat messages.

    Earlier turns become user/assistant pairs, and the image goes with the first user message.
    """
    pairs: list[tuple[str, str | None]] = []
    pending = ""
    segments = prompt.split(HUMAN.strip())
    for segment in segments[:-1]:
        question, sep, answer = segment.partition(ASSISTANT.strip())
        if not sep:  # a stray separator: keep its text with the next question
            pending += segment
            continue
        pairs.append(((pending + question).strip(), answer.strip()))
        pending = ""
    pairs.append(((pending + segments[-1]).strip(), None))
    messages: list[dict] = []
    for index, (question, answer) in enumerate(pairs):
        content: list[dict] = [{"type": "image"}] if index == 0 else []
        content.append({"type": "text", "text": question})
        messages.append({"role": "user", "content": content})
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def prepare_processor(processor: Any) -> Any:
    """Set up an Idefics3-style processor as every engine here uses it; returns it.

    Image splitting is turned off: one 512-px tile (64 tokens for SmolVLM) gives the first word
    after about a second on two cores instead of ten to twenty.
    """
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None and hasattr(image_processor, "do_image_splitting"):
        image_processor.do_image_splitting = False
    if getattr(processor, "chat_template", None) is None:
        processor.chat_template = CHAT_TEMPLATE
    return processor


def render(processor: Any, prompt: str) -> tuple[str, int]:
    """The prompt text for `processor` (image placeholder included) and its number of user turns."""
    messages = messages_from_prompt(prompt)
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    return text, sum(1 for m in messages if m["role"] == "user")


def fit_new_tokens(*, prompt_tokens: int, image_tokens: int, max_length: int, max_new_tokens: int,
                   context: int | None) -> Budget:
    """MiniGPT-4's `max_length` (prompt + answer) and the model's context applied to the answer.

    Unlike MiniGPT-4 this cuts the answer, not the prompt, because cutting a prompt would cut
    image tokens. A prompt that leaves no room for one new token raises PredictionError naming
    the length needed.
    """
    room = max_length - prompt_tokens
    if room < 1:
        raise PredictionError(
            f"max_length {max_length} leaves no room for an answer: the prompt is already "
            f"{prompt_tokens} tokens ({image_tokens} of them for the image). "
            f"Set max_length to at least {prompt_tokens + 1}.")
    notes: list[str] = []
    if room < max_new_tokens:
        notes.append(f"max_new_tokens {max_new_tokens} lowered to {room} so prompt + answer "
                     f"fit max_length {max_length}")
        max_new_tokens = room
    if context and prompt_tokens + max_new_tokens > context:
        room = max(1, context - prompt_tokens)
        notes.append(f"max_new_tokens {max_new_tokens} lowered to {room} to fit the model's "
                     f"{context}-token context")
        max_new_tokens = room
    return Budget(max_new_tokens=max_new_tokens, notes=notes)

"""Stand-ins for MiniGPT-4's Cog predictor, with its exact inputs (daanelson/minigpt-4 predict.py).

`StringPredictor` answers with one string, as MiniGPT-4 does; `IteratorPredictor` yields the same
answer word by word. The answer names what arrived (image size and digest, every parameter), so
a test can check that the image and each parameter crossed the wire. A prompt containing "fail"
raises; one containing "slowly" runs for a minute unless canceled.

Environment: SETUP_SECONDS (setup delay), FAIL_SETUP (setup raises this text), ANSWER_SECONDS
(string: time before answering), WORD_SECONDS (iterator: time per word), RECORD_FILE (a JSON line
is appended for each prediction that sees its own cancellation), INSTANCE (this server's name in
the logs).
"""

import hashlib
import json
import os
import time
from typing import Iterator

from cog import BasePredictor, CancelationException, Input, Path
from PIL import Image


class _StandIn(BasePredictor):
    def setup(self) -> None:
        print("loading the MiniGPT-4 stand-in (no weights)", flush=True)
        time.sleep(float(os.environ.get("SETUP_SECONDS", "0")))
        if os.environ.get("FAIL_SETUP"):
            raise RuntimeError(os.environ["FAIL_SETUP"])
        print("stand-in ready", flush=True)

    def _answer(self, image: Path, prompt: str, params: dict) -> str:
        data = open(image, "rb").read()
        with Image.open(image) as picture:
            size = f"{picture.width}x{picture.height}"
        instance = os.environ.get("INSTANCE", "the container")
        print(f"{instance} received a {size} image, {len(data)} bytes", flush=True)
        if "fail" in prompt:
            raise RuntimeError(f"CUDA out of memory (stand-in failure for {prompt!r})")
        if "slowly" in prompt:
            self._run_until_canceled(prompt)
        settings = " ".join(f"{name}={value}" for name, value in params.items())
        return (f"Answer to {prompt!r}: image {size} sha256:{hashlib.sha256(data).hexdigest()[:16]} "
                f"{settings}")

    def _run_until_canceled(self, prompt: str) -> None:
        try:
            for step in range(1200):  # short sleeps, so a cancel lands between them
                time.sleep(0.05)
                if step % 20 == 0:
                    print(f"still thinking ({step // 20} s)", flush=True)
        except CancelationException:
            with open(os.environ["RECORD_FILE"], "a") as record:
                record.write(json.dumps({"canceled": prompt}) + "\n")
            raise


class StringPredictor(_StandIn):
    def predict(
        self,
        image: Path = Input(description="Image to discuss"),
        prompt: str = Input(description="Prompt for mini-gpt4 regarding input image"),
        num_beams: int = Input(description="Number of beams for beam search decoding",
                               default=3, ge=1, le=10),
        temperature: float = Input(description="Temperature for generating tokens, lower = more "
                                               "predictable results", default=1.0, ge=0.01, le=2.0),
        top_p: float = Input(description="Sample from the top p percent most likely tokens",
                             default=0.9, ge=0.0, le=1.0),
        repetition_penalty: float = Input(
            description="Penalty for repeated words in generated text; 1 is no penalty, values "
                        "greater than 1 discourage repetition, less than 1 encourage it.",
            default=1.0, ge=0.01, le=5),
        max_new_tokens: int = Input(description="Maximum number of new tokens to generate",
                                    default=3000, ge=1),
        max_length: int = Input(description="Total length of prompt and output in tokens",
                                default=4000, ge=1),
    ) -> str:
        params = dict(num_beams=num_beams, temperature=temperature, top_p=top_p,
                      repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
                      max_length=max_length)
        answer = self._answer(image, prompt, params)
        time.sleep(float(os.environ.get("ANSWER_SECONDS", "0")))
        return answer


class IteratorPredictor(_StandIn):
    def predict(
        self,
        image: Path = Input(description="Image to discuss"),
        prompt: str = Input(description="Prompt for mini-gpt4 regarding input image"),
        num_beams: int = Input(description="Number of beams for beam search decoding",
                               default=3, ge=1, le=10),
        temperature: float = Input(description="Temperature for generating tokens, lower = more "
                                               "predictable results", default=1.0, ge=0.01, le=2.0),
        top_p: float = Input(description="Sample from the top p percent most likely tokens",
                             default=0.9, ge=0.0, le=1.0),
        repetition_penalty: float = Input(
            description="Penalty for repeated words in generated text; 1 is no penalty, values "
                        "greater than 1 discourage repetition, less than 1 encourage it.",
            default=1.0, ge=0.01, le=5),
        max_new_tokens: int = Input(description="Maximum number of new tokens to generate",
                                    default=3000, ge=1),
        max_length: int = Input(description="Total length of prompt and output in tokens",
                                default=4000, ge=1),
    ) -> Iterator[str]:
        params = dict(num_beams=num_beams, temperature=temperature, top_p=top_p,
                      repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens,
                      max_length=max_length)
        words = self._answer(image, prompt, params).split(" ")
        for index, word in enumerate(words):
            time.sleep(float(os.environ.get("WORD_SECONDS", "0")))
            yield word if index == 0 else " " + word

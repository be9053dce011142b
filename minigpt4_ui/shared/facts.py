"""Facts that the app and the embedded server both rely on, each written once here.

The app (UI, handlers, conversation, `replicate_api`) and the server (`minigpt4_ui.server`) never
import each other; what both must agree on lives in this module and in the other shared modules
(`schema`, `model_schema`, `urlfetch`, `imagelimits`, `webhook_signature`). The API rules behind
these values are in docs/replicate-api-rules.md.
"""

from __future__ import annotations

# The model this demo is about, and the version it runs unless MINIGPT4_VERSION names another.
MODEL = "daanelson/minigpt-4"
VERSION = "e447a8583cffd86ce3b93f9c2cd24f2eae603d99ace6afa94b33a08e94a3cd06"
MODEL_PAGE = f"https://replicate.com/{MODEL}"

# Where Replicate's API lives; REPLICATE_BASE_URL may point the app elsewhere.
REPLICATE_BASE_URL = "https://api.replicate.com"

# MiniGPT-4's turn separators: its prompt is `…###Human: <Img><ImageHere></Img> {prompt}###Assistant:`,
# so the app folds earlier turns with them and the server's predictors split prompts on them.
HUMAN = "###Human: "
ASSISTANT = "###Assistant: "

# Statuses after which a prediction never changes. `aborted`: its Cancel-After deadline passed
# before it started (docs/replicate-api-rules.md, "Statuses").
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})

# The strictest documented limit on an input given as a data URI; the app encodes images under it.
MAX_DATA_URI_BYTES = 256_000

# The open model the embedded server answers with when no token is set, and how it runs on CPU.
SMOLVLM = "HuggingFaceTB/SmolVLM-256M-Instruct"
SMOLVLM_PRECISION = "int8"
# The precisions SmolVLM's ONNX files come in (`onnx/<part>_<precision>.onnx`; fp32 has no suffix).
PRECISIONS = ("int8", "fp32", "fp16", "uint8", "q4", "q4f16", "bnb4", "quantized")

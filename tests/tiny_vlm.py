"""Build a tiny random SmolVLM (Idefics3) model folder, offline, for tests and the benchmark.

The folder has the same layout as a real checkpoint (config, safetensors weights, processor,
tokenizer, chat template), so `SmolVLMPredictor(folder)` runs its real loading and generation code
on it. The weights are random but tilted towards whole words, so its answers are deterministic
strings of random words that stream word by word. Like the real SmolVLM it ships with image
splitting on (a 64-px image becomes 4 tiles plus a global one), so tests can check that the
predictor turns it off. About 72 k parameters and 0.3 MB; building it takes a fraction of a second.
Needs torch and transformers (requirements-local.txt) and nothing from the network.

shape="tiny-onnx" is the model behind the committed ONNX fixture tests/fixtures/tiny-smolvlm
(tests/onnx_export.py makes it): the real model's 512-px tiles and 64 image tokens per tile, 83 k
parameters. Plain word tilting is not enough there: greedy decoding fell into 1–4-word loops
(" of is of is …") for most seeds, because the 400-token tokenizer has only 17 space-led words
(several cut short: " imag", " blu") and the token embeddings (std 0.2) are small next to what the
layers add, so the next token barely depends on the last one. So this shape trains a 600-token
tokenizer (523 tokens: every corpus word is whole), keeps only whole lowercase corpus words (61),
and scales the token embeddings ×5. With the fixture's seed (7) greedy gives 23 distinct words in
30 tokens, and the ids still depend on the image (another colour changes nearly all 30 ids).
"""

from __future__ import annotations

from pathlib import Path

# SmolVLM-Instruct's own chat template: `<|im_start|>User:<image>Hi<end_of_utterance>\nAssistant:`.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
SPECIAL_TOKENS = (["<|im_start|>", "<end_of_utterance>", "<pad>", "<unk>", "<image>",
                   "<fake_token_around_image>", "<global-img>"]
                  + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)])
# Model shapes. "tiny" is for tests; "smolvlm-256m" has SmolVLM-256M-Instruct's layer sizes
# (SigLIP 93 M + SmolLM2-135M, 64 image tokens per 512-px tile) with random weights, for timing the
# real thing without downloading it (about 1 GB on disk in float32; a few seconds to build).
SHAPES = {
    "tiny": {"vision": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
             "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "num_key_value_heads": 1},
             "scale_factor": 2, "vocab_size": None},
    # "tiny-onnx" keeps the real model's 512-px tiles and 64 image tokens per tile (so the real
    # preprocessing and prompt apply unchanged) but is tiny elsewhere: the committed ONNX fixture
    # (tests/fixtures/tiny-smolvlm, made by tests/onnx_export.py). initializer_range 0.2 because
    # the default 0.02 makes greedy decoding collapse onto one or two ids.
    "tiny-onnx": {"vision": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "image_size": 512, "patch_size": 16,
                             "initializer_range": 0.2},
                  "text": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
                           "rope_theta": 100000.0, "initializer_range": 0.2},
                  "scale_factor": 4, "vocab_size": None,
                  # see the module docstring: a bigger tokenizer, whole words only, larger embeddings
                  "tokenizer_vocab": 600, "whole_words": True, "embed_scale": 5.0},
    "smolvlm-256m": {"vision": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                                "num_attention_heads": 12, "image_size": 512, "patch_size": 16},
                     "text": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                              "num_attention_heads": 9, "num_key_value_heads": 3,
                              "rope_theta": 100000.0},
                     "scale_factor": 4, "vocab_size": 49280},
}
IMAGE_SIZE = SHAPES["tiny"]["vision"]["image_size"]  # pixels per tile (the vision encoder's input)
IMAGE_SEQ_LEN = 4  # the tiny model's image tokens per tile: (32 / 8)² / 2²


def image_seq_len(shape: str = "tiny") -> int:
    """Image tokens per tile: (image_size / patch_size)² / scale_factor²."""
    vision = SHAPES[shape]["vision"]
    return (vision["image_size"] // vision["patch_size"]) ** 2 // SHAPES[shape]["scale_factor"] ** 2


CORPUS = [
    "a photo of a red car parked on the street", "two cats sleeping on a blue sofa",
    "the image shows a mountain lake at sunset", "a plate of pasta with tomato sauce",
    "a person riding a bicycle in the park", "an old building with tall windows",
    "the sky is clear and the grass is green", "a dog runs after a yellow ball",
    "there is a bowl of fruit on the table", "children play football on the beach",
    "What is in this image? Describe it in detail.", "Assistant: User: It is a small picture.",
    "The colours are dark grey, white and light blue.", "Why is it red? How big is it?",
] * 8


def build_tiny_vlm(folder: str | Path, *, seed: int = 0, shape: str = "tiny") -> Path:
    """Write a random Idefics3 checkpoint (model + processor) into `folder`; return it.

    `shape` picks the layer sizes from SHAPES; the tokenizer is the same small one for all.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (Idefics3Config, Idefics3ForConditionalGeneration,
                              Idefics3ImageProcessorPil, Idefics3Processor, PreTrainedTokenizerFast)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=SHAPES[shape].get("tokenizer_vocab", 400),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=SPECIAL_TOKENS, show_progress=False))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
        pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in
                                   ("<|im_start|>", "<end_of_utterance>", "<pad>", "<unk>")])
    sizes = SHAPES[shape]
    tile = sizes["vision"]["image_size"]
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=True, size={"longest_edge": (2 if shape == "tiny" else 4) * tile},
        max_image_size={"longest_edge": tile})
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                  image_seq_len=image_seq_len(shape), chat_template=SMOLVLM_CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<end_of_utterance>",
                                                          "<pad>", "<image>")}
    config = Idefics3Config(
        vision_config=sizes["vision"],
        text_config={"model_type": "llama", "vocab_size": sizes["vocab_size"] or len(tokenizer),
                     **sizes["text"], "max_position_embeddings": 8192,
                     "bos_token_id": ids["<|im_start|>"], "eos_token_id": ids["<end_of_utterance>"],
                     "pad_token_id": ids["<pad>"]},
        scale_factor=sizes["scale_factor"], image_token_id=ids["<image>"], pad_token_id=ids["<pad>"])
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    _speak_words(model, tokenizer, whole_words=sizes.get("whole_words", False),
                 embed_scale=sizes.get("embed_scale", 1.0))
    model.generation_config.bos_token_id = ids["<|im_start|>"]
    model.generation_config.eos_token_id = ids["<end_of_utterance>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _speak_words(model, tokenizer, *, whole_words: bool = False, embed_scale: float = 1.0) -> None:
    """Make the random model pick whole words (" the", " cat") and never end early.

    Random weights give near-uniform logits over byte tokens, so answers would be broken UTF-8
    that a streamer holds back until the end. Scaling up the output rows of space-led alphabetic
    tokens and zeroing all others (end-of-utterance included) gives answers of real words that
    stream word by word and always run to max_new_tokens. `whole_words` keeps only tokens that are
    a whole lowercase word of CORPUS; `embed_scale` multiplies the input token embeddings, so the
    last token weighs more against the context (see the module docstring: "tiny-onnx").
    """
    import torch

    corpus_words = {w.strip("?.,:").lower() for line in CORPUS for w in line.split()}
    with torch.no_grad():
        head = model.lm_head.weight
        keep = torch.zeros(head.shape[0], dtype=torch.bool)  # ids past the tokenizer stay zero
        for token_id in range(len(tokenizer)):
            token = tokenizer.convert_ids_to_tokens(token_id)
            word = token[1:] if token.startswith("Ġ") else ""
            keep[token_id] = len(word) >= 2 and (word in corpus_words if whole_words else word.isalpha())
        head[keep] *= 100.0
        head[~keep] = 0.0
        if embed_scale != 1.0:
            model.get_input_embeddings().weight.mul_(embed_scale)


if __name__ == "__main__":
    import sys
    import tempfile

    print(build_tiny_vlm(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="tiny-vlm-"),
                         shape=sys.argv[2] if len(sys.argv) > 2 else "tiny"))

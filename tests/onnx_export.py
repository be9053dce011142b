"""Export a SmolVLM (Idefics3) checkpoint to the three ONNX files of HuggingFaceTB/SmolVLM-256M-Instruct.

`export_onnx(folder)` writes `<folder>/onnx/` with the official file names, input/output names and
dynamic axes (docs: shared reference onnx-smolvlm.md §2–3):

- `vision_encoder.onnx`: `pixel_values` float32 [batch, num_images, 3, height, width] and
  `pixel_attention_mask` bool [batch, num_images, height, width] → `image_features` float32
  [batch*num_images, image_seq_len, text hidden] (the connector's output, ready to scatter into the
  `<image>` positions).
- `embed_tokens.onnx`: `input_ids` int64 [batch, seq] → `inputs_embeds` float32 [batch, seq, hidden].
- `decoder_model_merged.onnx`: `inputs_embeds`, `attention_mask` int64 [batch, past+seq] (the full
  length), `position_ids` int64 [batch, seq] (only the new positions), `past_key_values.{l}.key` /
  `.value` float32 [batch, kv_heads, past, head_dim] → `logits` [batch, seq, vocab] and
  `present.{l}.key` / `.value` [batch, kv_heads, past+seq, head_dim]. One graph serves the prefill
  (past length 0) and the decode steps.
- with "int8" in `precisions`: `*_int8.onnx` from onnxruntime's `quantize_dynamic` (QInt8 weights,
  per-tensor). For `embed_tokens_int8.onnx` the Gather is quantized too (like the official file, a
  quarter of the fp32 size); its output stays float32.

Recipe: torch.onnx.export(dynamo=True, opset 18, one file, no external data), the model loaded with
attn_implementation="eager", wrappers with explicit arguments (a `*past` signature breaks the
dynamic axes). The tiny "tiny-onnx" model exports in a few seconds; "smolvlm-256m" (random weights of
the real size, tests/tiny_vlm.py) in about 90 s and 3 GB of memory.

`regenerate_fixture()` rebuilds the committed fixture tests/fixtures/tiny-smolvlm (HF folder, ONNX
files, golden.json with transformers' greedy ids). Needs torch, transformers, onnx, onnxscript and
onnxruntime; nothing from the network.

    python tests/onnx_export.py HF_FOLDER [--out OUT_FOLDER] [--precisions fp32,int8]
    python tests/onnx_export.py --fixture
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny-smolvlm"
FIXTURE_SEED = 7  # see tests/tiny_vlm.py's docstring: 23 distinct ids in golden.json's 30
OPSET = 18
# golden.json's input: one flat-coloured image, one question, no image splitting (one 512-px tile).
GOLDEN_IMAGE = {"size": [640, 480], "color": [30, 90, 200]}
GOLDEN_QUESTION = "What is in this picture?"
GOLDEN_NEW_TOKENS = 30


def _load(hf_folder):
    from transformers import Idefics3ForConditionalGeneration

    model = Idefics3ForConditionalGeneration.from_pretrained(hf_folder, attn_implementation="eager")
    return model.float().eval()


def _vision_wrapper(model):
    import torch

    patch = model.config.vision_config.patch_size

    class VisionEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vision_model = model.model.vision_model
            self.connector = model.model.connector

        def forward(self, pixel_values, pixel_attention_mask):
            batch, images, channels, height, width = pixel_values.shape
            pixel_values = pixel_values.reshape(batch * images, channels, height, width)
            mask = pixel_attention_mask.reshape(batch * images, height // patch, patch, width // patch, patch)
            patch_mask = mask.to(torch.int64).sum(dim=(2, 4)) > 0
            hidden = self.vision_model(pixel_values=pixel_values, patch_attention_mask=patch_mask,
                                       return_dict=True).last_hidden_state
            return self.connector(hidden)

    return VisionEncoder()


def _embed_wrapper(model):
    import torch

    class EmbedTokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = model.get_input_embeddings()

        def forward(self, input_ids):
            return self.embed_tokens(input_ids)

    return EmbedTokens()


def _decoder_wrapper(model, layers: int):
    """A module whose forward takes 3 + 2·layers named tensors (inputs_embeds, attention_mask,
    position_ids, past_0_key, past_0_value, …) and returns logits, present_0_key, … ."""
    import torch
    from transformers import DynamicCache

    text_config = model.config.text_config

    class DecoderMerged(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text_model = model.model.text_model
            self.lm_head = model.lm_head

        def run(self, inputs_embeds, attention_mask, position_ids, past):
            cache = DynamicCache(ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)],
                                 config=text_config)
            out = self.text_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                  position_ids=position_ids, cache=cache, use_cache=True, return_dict=True)
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (self.lm_head(out.last_hidden_state), *present)

    # torch.export reads the argument names off the signature, so spell them out.
    args = ", ".join(f"past_{i}_key, past_{i}_value" for i in range(layers))
    namespace: dict = {}
    exec(f"def forward(self, inputs_embeds, attention_mask, position_ids, {args}):\n"
         f"    return self.run(inputs_embeds, attention_mask, position_ids, [{args}])\n", namespace)
    DecoderMerged.forward = namespace["forward"]
    return DecoderMerged()


def _export(module, args, path: Path, input_names, output_names, dynamic_axes) -> None:
    import torch

    program = torch.onnx.export(module.eval(), tuple(args), dynamo=True, opset_version=OPSET,
                                external_data=False, input_names=list(input_names),
                                output_names=list(output_names), dynamic_axes=dynamic_axes,
                                verbose=False)
    program.save(str(path), external_data=False)


def _quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The default op types include MatMul, Gather (embeddings) and Conv (the patch embedding).
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def export_onnx(hf_folder, out_folder=None, precisions=("fp32", "int8"), log=None) -> Path:
    """Export `hf_folder` into `<out_folder or hf_folder>/onnx/`; return that onnx folder.

    fp32 files are written whenever int8 is asked for too (int8 is quantized from them); with
    precisions=("int8",) the fp32 files are deleted afterwards. `log(str)` hears each file's time.
    """
    import torch

    unknown = set(precisions) - {"fp32", "int8"}
    if unknown:
        raise ValueError(f"unknown precisions {sorted(unknown)}: use fp32 and/or int8")
    onnx_dir = Path(out_folder or hf_folder) / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    model = _load(hf_folder)
    vision, text = model.config.vision_config, model.config.text_config
    layers, kv_heads = text.num_hidden_layers, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    tile = vision.image_size
    # Example inputs: batch 2 and sizes other than 1, so that no axis is specialised to a constant.
    batch, images, seq, past = 2, 2, 3, 5
    names = ["vision_encoder", "embed_tokens", "decoder_model_merged"]
    start = time.perf_counter()

    def done(path: Path) -> None:
        if log:
            log(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB at {time.perf_counter() - start:.1f} s")

    with torch.no_grad():
        _export(_vision_wrapper(model),
                [torch.randn(batch, images, 3, tile, tile), torch.ones(batch, images, tile, tile, dtype=torch.bool)],
                onnx_dir / "vision_encoder.onnx", ["pixel_values", "pixel_attention_mask"], ["image_features"],
                {"pixel_values": {0: "batch_size", 1: "num_images"},
                 "pixel_attention_mask": {0: "batch_size", 1: "num_images"},
                 "image_features": {0: "batch_size_x_num_images"}})
        done(onnx_dir / "vision_encoder.onnx")
        _export(_embed_wrapper(model), [torch.randint(0, text.vocab_size, (batch, seq))],
                onnx_dir / "embed_tokens.onnx", ["input_ids"], ["inputs_embeds"],
                {"input_ids": {0: "batch_size", 1: "sequence_length"},
                 "inputs_embeds": {0: "batch_size", 1: "sequence_length"}})
        done(onnx_dir / "embed_tokens.onnx")
        kv_in = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        kv_out = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
        axes = {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
                "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
                "position_ids": {0: "batch_size", 1: "sequence_length"},
                "logits": {0: "batch_size", 1: "sequence_length"}}
        axes.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in kv_in})
        axes.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in kv_out})
        _export(_decoder_wrapper(model, layers),
                [torch.randn(batch, seq, text.hidden_size), torch.ones(batch, past + seq, dtype=torch.int64),
                 torch.arange(past, past + seq).expand(batch, seq).contiguous(),
                 *[torch.randn(batch, kv_heads, past, head_dim) for _ in kv_in]],
                onnx_dir / "decoder_model_merged.onnx",
                ["inputs_embeds", "attention_mask", "position_ids", *kv_in], ["logits", *kv_out], axes)
        done(onnx_dir / "decoder_model_merged.onnx")
    del model
    if "int8" in precisions:
        for name in names:
            _quantize_int8(onnx_dir / f"{name}.onnx", onnx_dir / f"{name}_int8.onnx")
            done(onnx_dir / f"{name}_int8.onnx")
    if "fp32" not in precisions:
        for name in names:
            (onnx_dir / f"{name}.onnx").unlink()
    return onnx_dir


def golden_inputs(folder, return_tensors="pt"):
    """The processor and golden.json's processed inputs (image, chat prompt, no splitting)."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    processor.image_processor.do_image_splitting = False
    image = Image.new("RGB", tuple(GOLDEN_IMAGE["size"]), tuple(GOLDEN_IMAGE["color"]))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": GOLDEN_QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    return processor, prompt, processor(text=prompt, images=[image], return_tensors=return_tensors)


def write_golden(folder) -> dict:
    """Write `<folder>/golden.json`: transformers' first greedy ids for golden_inputs(); return it."""
    import torch
    import transformers
    from transformers import Idefics3ForConditionalGeneration

    processor, prompt, inputs = golden_inputs(folder)
    model = Idefics3ForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=GOLDEN_NEW_TOKENS, do_sample=False, num_beams=1,
                             output_scores=True, return_dict_in_generate=True)
    prompt_length = inputs["input_ids"].shape[1]
    ids = out.sequences[0, prompt_length:].tolist()
    top2 = [step[0].topk(2).values for step in out.scores]
    golden = {
        "about": "transformers generate(do_sample=False, num_beams=1) on this folder; see tests/onnx_export.py",
        "image": {"mode": "RGB", **GOLDEN_IMAGE},
        "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": GOLDEN_QUESTION}]}],
        "add_generation_prompt": True,
        "do_image_splitting": False,
        "prompt": prompt,
        "prompt_length": prompt_length,
        "max_new_tokens": GOLDEN_NEW_TOKENS,
        "ids": ids,
        "text": processor.decode(ids),
        "min_top2_logit_gap": round(min(float(a - b) for a, b in top2), 3),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    lines = ",\n".join(f" {json.dumps(key)}: {json.dumps(value)}" for key, value in golden.items())
    (Path(folder) / "golden.json").write_text("{\n" + lines + "\n}\n")
    return golden


def regenerate_fixture(folder=FIXTURE, seed: int = FIXTURE_SEED, log=None) -> Path:
    """Rebuild tests/fixtures/tiny-smolvlm: HF folder ("tiny-onnx"), onnx/ (fp32 + int8), golden.json.

    Everything in the folder except README.md is replaced.
    """
    try:
        from .tiny_vlm import build_tiny_vlm
    except ImportError:  # run as a script
        from tiny_vlm import build_tiny_vlm

    folder = Path(folder)
    if folder.exists():
        for path in folder.iterdir():
            if path.name != "README.md":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    build_tiny_vlm(folder, seed=seed, shape="tiny-onnx")
    export_onnx(folder, log=log)
    write_golden(folder)
    return folder


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("hf_folder", nargs="?", help="a SmolVLM / Idefics3 checkpoint folder")
    parser.add_argument("--out", help="write OUT/onnx/ instead of HF_FOLDER/onnx/")
    parser.add_argument("--precisions", default="fp32,int8", help="comma-separated: fp32, int8")
    parser.add_argument("--fixture", action="store_true", help="regenerate tests/fixtures/tiny-smolvlm")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.fixture:
        folder = regenerate_fixture(log=print)
    elif args.hf_folder:
        folder = export_onnx(args.hf_folder, args.out, tuple(p for p in args.precisions.split(",") if p),
                             log=print)
    else:
        parser.error("give HF_FOLDER or --fixture")
    print(f"{folder} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

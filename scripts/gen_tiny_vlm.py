"""Write tiny random-weight vision-language models as GGUF pairs, plus their golden logits.

Dev-only (needs torch, transformers and sentencepiece, which are not runtime dependencies),
offline. llama.cpp's own converter comes from the llama-cpp-python source distribution:

    pip download --no-binary :all: --no-deps llama-cpp-python==0.3.36 -d /tmp/sdist
    tar xzf /tmp/sdist/llama_cpp_python-0.3.36.tar.gz -C /tmp/sdist
    HF_HUB_OFFLINE=1 python scripts/gen_tiny_vlm.py \
        --llama-cpp /tmp/sdist/llama_cpp_python-0.3.36/vendor/llama.cpp

For each family it builds the model with transformers' own classes, re-randomises every
weight (default inits zero Gemma 3's image projection, and then an image changes nothing),
saves it, and runs `convert_hf_to_gguf.py` twice: once for the language GGUF, once with
`--mmproj` for the projector (architecture `clip`). Then it asks llama.cpp's `mtmd` how it
lays out a fixed prompt around each test image (text tokens, image positions), runs the
transformers model on exactly those ids and pixels, and stores the last position's logits
in `tests/testdata/vision/golden.json`, so a test can check the real engine against
transformers without either library at test time.

Families (both served by llama.cpp's mtmd):

- `gemma3`: Gemma3ForConditionalGeneration; SigLIP tower at 896 x 896 with 14-px patches,
  256 image tokens (Gemma 3's real layout), tied embeddings, bidirectional image attention.
- `smolvlm`: Idefics3ForConditionalGeneration (SmolVLM's architecture), Llama text model,
  SigLIP tower at 64 x 64 and a pixel-shuffle connector.

The test images are 896 x 896 PNGs drawn here (a gradient and a checkerboard), sized so
neither llama.cpp nor this script resizes them: the pixels both see are the same.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "testdata" / "vision"
SEED = 20261208
IMAGE_SIDE = 896
QUESTION = "What is in this picture?"

SPECIALS = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>"]
IDEFICS_SPECIALS = [
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
    "\n\n",
    "\n",
]
"""SmolVLM's specials; mtmd looks up "\\n\\n" and "\\n" as single tokens around the tiles."""
CORPUS = [
    "What is in this picture? A red square on a blue field.",
    "Describe the image. It shows a cat sitting on a mat.",
    "The quick brown fox jumps over the lazy dog.",
    "user model assistant picture image photo describe what is this",
    "Hello world! How are you today? I am fine, thank you.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and letters a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def images() -> dict[str, Image.Image]:
    """Two distinct 896 x 896 RGB test images, cheap to store as PNG."""
    y, x = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE]
    gradient = np.stack([x * 255 // IMAGE_SIDE, y * 255 // IMAGE_SIDE, 128 + 0 * x], axis=-1)
    checker = (((x // 112) + (y // 112)) % 2) * 255
    board = np.stack([checker, 255 - checker, 64 + 0 * x], axis=-1)
    return {
        "gradient": Image.fromarray(gradient.astype(np.uint8), "RGB"),
        "checker": Image.fromarray(board.astype(np.uint8), "RGB"),
    }


def pixels(image: Image.Image, side: int) -> torch.Tensor:
    """What llama.cpp feeds the tower for an image already at the tower's size:
    (x / 255 - 0.5) / 0.5, channels first."""
    array = np.asarray(image.resize((side, side), Image.Resampling.NEAREST), dtype=np.float32)
    return torch.from_numpy((array / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]


def train_spm(work: Path, specials: list[str]) -> Path:
    """A tiny SentencePiece BPE model (Gemma-style: byte fallback, specials user-defined)."""
    import sentencepiece as spm

    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 4) + "\n")
    prefix = work / "tokenizer"
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        user_defined_symbols=specials,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every weight random and non-zero (norms too, so a missing +1 shows), none zeroed."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
            if "norm" in name and param.dim() == 1:
                param.copy_(0.2 * noise + (0.0 if "gemma" in type(model).__name__.lower() else 1.0))
            elif "embed" in name and "patch" not in name and "position" not in name:
                param.copy_(0.5 * noise)
            else:
                param.copy_(noise / max(1.0, param.shape[-1] ** 0.5))


def build_gemma3(work: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    spm_model = train_spm(work, [*SPECIALS, "<image_soft_token>"])
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    ids = {name: sp.piece_to_id(name) for name in [*SPECIALS, "<image_soft_token>"]}
    config = Gemma3Config(
        text_config={
            "vocab_size": sp.get_piece_size(),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 512,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-6,
            "final_logit_softcapping": None,
            "attn_logit_softcapping": None,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIDE,
            "patch_size": 14,
            "layer_norm_eps": 1e-6,
            "vision_use_head": False,
        },
        mm_tokens_per_image=256,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    randomise(model, SEED)
    processor = {
        "image_processor_type": "Gemma3ImageProcessor",
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": 256,
        "size": {"height": IMAGE_SIDE, "width": IMAGE_SIDE},
    }
    (work / "preprocessor_config.json").write_text(json.dumps(processor))
    tok_config = {"bos_token": "<bos>", "eos_token": "<eos>", "add_bos_token": True}
    (work / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return model, {"image_token": ids["<image_soft_token>"], "side": IMAGE_SIDE}


VISION_RENAMES = {"gemma3": ("vision_tower.", "vision_tower.vision_model.")}
"""transformers 5 saves the SigLIP tower without its `vision_model.` level; llama.cpp's
converter maps only the names transformers 4 wrote."""


def legacy_vision_names(hf_dir: Path, family: str) -> None:
    """Rename the saved vision weights to the names the converter knows; drop the SigLIP
    attention-pooling head (Gemma 3 never uses it)."""
    from safetensors.torch import load_file, save_file

    if family not in VISION_RENAMES:
        return
    old, new = VISION_RENAMES[family]
    path = hf_dir / "model.safetensors"
    tensors = load_file(path)
    renamed = {
        (new + key[len(old) :] if key.startswith(old) else key): value
        for key, value in tensors.items()
        if ".head." not in key
    }
    save_file(renamed, path, metadata={"format": "pt"})


def build_smolvlm(work: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    import sentencepiece as spm
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    spm_model = train_spm(work, IDEFICS_SPECIALS)
    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    config = Idefics3Config(
        text_config={
            "model_type": "llama",
            "vocab_size": sp.get_piece_size(),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIDE,
            "patch_size": 14,
            "layer_norm_eps": 1e-5,
        },
        scale_factor=8,
        image_token_id=sp.piece_to_id("<image>"),
        tie_word_embeddings=False,
    )
    model = Idefics3ForConditionalGeneration(config).eval()
    randomise(model, SEED + 1)
    processor = {
        "image_processor_type": "Idefics3ImageProcessor",
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"longest_edge": IMAGE_SIDE},
        "max_image_size": {"longest_edge": IMAGE_SIDE},
    }
    (work / "preprocessor_config.json").write_text(json.dumps(processor))
    tok_config = {"bos_token": "<s>", "eos_token": "<end_of_utterance>", "add_bos_token": True}
    (work / "tokenizer_config.json").write_text(json.dumps(tok_config))
    tokens_per_tile = (IMAGE_SIDE // 14) ** 2 // 8**2
    meta = {"image_token": sp.piece_to_id("<image>"), "side": IMAGE_SIDE}
    return model, meta | {"tokens_per_tile": tokens_per_tile}


def text_dir(model: torch.nn.Module, work: Path) -> Path:
    """Where the language model's weights are, as llama.cpp's converter takes them:
    Gemma 3's whole checkpoint; Idefics3's Llama saved on its own (as SmolVLM's GGUFs are
    made: the converter has no text class for Idefics3ForConditionalGeneration)."""
    from transformers import LlamaForCausalLM

    if "gemma3" in type(model).__name__.lower():
        return work
    llama = LlamaForCausalLM(model.config.text_config).eval()
    llama.model.load_state_dict(model.model.text_model.state_dict())
    llama.lm_head.load_state_dict(model.lm_head.state_dict())
    out = work / "text"
    llama.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        (out / name).write_bytes((work / name).read_bytes())
    return out


def convert(llama_cpp: Path, hf_dir: Path, out: Path, *, mmproj: bool) -> None:
    argv = [sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(hf_dir)]
    argv += ["--outfile", str(out), "--outtype", "f32"]
    if mmproj:
        argv.append("--mmproj")
    subprocess.run(argv, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def mtmd_layout(model: Path, mmproj: Path, image_png: Path, prompt: str) -> list[int | None]:
    """The prompt as llama.cpp lays it out: text token ids, and None for each image token."""
    import llama_cpp
    from llama_cpp import mtmd_cpp as m

    llama_cpp.llama_backend_init()
    mparams = llama_cpp.llama_model_default_params()
    lmodel = llama_cpp.llama_model_load_from_file(str(model).encode(), mparams)
    cparams = m.mtmd_context_params_default()
    cparams.use_gpu = False
    cparams.warmup = False
    ctx = m.mtmd_init_from_file(str(mmproj).encode(), lmodel, cparams)
    data = image_png.read_bytes()
    buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    bitmap = m.mtmd_helper_bitmap_init_from_buf(ctx, buf, len(data), False)
    chunks = m.mtmd_input_chunks_init()
    text = m.mtmd_input_text(prompt.encode(), len(prompt.encode()), True, True)
    bitmaps = (m.mtmd_bitmap_p_ctypes * 1)(bitmap)
    assert m.mtmd_tokenize(ctx, chunks, ctypes.byref(text), bitmaps, 1) == 0
    layout: list[int | None] = []
    for i in range(m.mtmd_input_chunks_size(chunks)):
        chunk = m.mtmd_input_chunks_get(chunks, i)
        if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_TEXT:
            n = ctypes.c_size_t()
            ptr = m.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
            layout += [ptr[j] for j in range(n.value)]
        else:
            layout += [None] * m.mtmd_input_chunk_get_n_tokens(chunk)
    m.mtmd_input_chunks_free(chunks)
    m.mtmd_bitmap_free(bitmap)
    m.mtmd_free(ctx)
    llama_cpp.llama_model_free(lmodel)
    return layout


def hf_logits(
    model: torch.nn.Module, layout: list[int | None], image: Image.Image, meta: dict[str, Any]
) -> list[float]:
    ids = torch.tensor([[meta["image_token"] if t is None else t for t in layout]])
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "gemma3" in type(model).__name__.lower():
        kwargs["pixel_values"] = pixels(image, meta["side"])
        kwargs["token_type_ids"] = torch.tensor([[1 if t is None else 0 for t in layout]])
    else:  # Idefics3: the image is one tile plus its overview, identical at this size
        tiles = layout.count(None) // meta["tokens_per_tile"]
        kwargs["pixel_values"] = pixels(image, meta["side"])[:, None].repeat(1, tiles, 1, 1, 1)
    with torch.no_grad():
        out = model(**kwargs)
    return [round(float(v), 6) for v in out.logits[0, -1]]


FAMILIES = {"gemma3": build_gemma3, "smolvlm": build_smolvlm}
PROMPTS = {
    "gemma3": f"<start_of_turn>user\n<__media__>{QUESTION}<end_of_turn>\n<start_of_turn>model\n",
    "smolvlm": f"<|im_start|>User:<__media__>{QUESTION}<end_of_utterance>\nAssistant:",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="vendor/llama.cpp")
    args = parser.parse_args()
    sys.path.insert(0, str(args.llama_cpp / "gguf-py"))
    torch.manual_seed(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    pictures = images()
    for name, image in pictures.items():
        image.save(OUT / f"{name}.png", optimize=True)
    golden: dict[str, Any] = {"question": QUESTION, "families": {}}
    for family, build in FAMILIES.items():
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            model, meta = build(work)
            model.save_pretrained(work, safe_serialization=True)
            legacy_vision_names(work, family)
            lang, proj = OUT / f"{family}.gguf", OUT / f"{family}-mmproj.gguf"
            convert(args.llama_cpp, text_dir(model, work), lang, mmproj=False)
            convert(args.llama_cpp, work, proj, mmproj=True)
            entry: dict[str, Any] = {"prompt": PROMPTS[family], "images": {}}
            for picture, image in pictures.items():
                layout = mtmd_layout(lang, proj, OUT / f"{picture}.png", PROMPTS[family])
                entry["images"][picture] = {
                    "layout": layout,
                    "logits": hf_logits(model, layout, image, meta),
                }
            golden["families"][family] = entry
    (OUT / "golden.json").write_text(json.dumps(golden) + "\n")


if __name__ == "__main__":
    main()

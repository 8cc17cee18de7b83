"""Write `tests/testdata/minilm_golden.json`: all-MiniLM-L6-v2 embeddings from the reference.

Run it with a Python that has sentence-transformers (kept out of the project's venv):

    python3 -m venv ~/.cache/ollamapy/st-venv
    ~/.cache/ollamapy/st-venv/bin/pip install torch==2.13.0 sentence-transformers
    HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python scripts/make_minilm_golden.py [MODEL_DIR]

MODEL_DIR defaults to `$OLLAMAPY_CACHE/models/all-MiniLM-L6-v2` (made by
`scripts/bundle_models.py fetch`); the model is only ever read from that local directory.
The file holds fixed sentences and queries with their normalised embeddings (rounded to
`DECIMALS` places), each query's nearest sentence, the command and the library versions.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("OLLAMAPY_CACHE", Path.home() / ".cache" / "ollamapy"))
DEFAULT_MODEL_DIR = CACHE / "models" / "all-MiniLM-L6-v2"
OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "testdata" / "minilm_golden.json"
DECIMALS = 6

LONG_SENTENCE = " ".join(
    f"Paragraph {i}: the committee reviewed the quarterly figures, argued about budgets, "
    "and finally agreed to postpone the decision until the next meeting."
    for i in range(1, 16)
)
"""Well over 256 word pieces: checks that both sides truncate the same way."""

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The girl is carrying a baby.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "The stock market fell 3.5% on Tuesday, its worst day since 2020.",
    "Wow!!! What a game... can you believe it?!",
    "Le café était délicieux, mais la crème brûlée était trop sucrée.",
    "Paris is the capital and most populous city of France.",
    "Python lists are mutable; tuples are immutable.",
    "hi",
    LONG_SENTENCE,
]

QUERIES = [
    "Someone is having a meal.",
    "A person rides an animal.",
    "What is the largest city in France?",
    "Shares dropped sharply this week.",
    "Which Python sequence types can be changed in place?",
]


def main(argv: list[str]) -> int:
    model_dir = Path(argv[1]) if len(argv) > 1 else DEFAULT_MODEL_DIR
    if not (model_dir / "config.json").is_file():
        print(f"no model at {model_dir}: run `python scripts/bundle_models.py fetch`")
        return 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    sentences = np.asarray(model.encode(SENTENCES, normalize_embeddings=True), dtype=np.float64)
    queries = np.asarray(model.encode(QUERIES, normalize_embeddings=True), dtype=np.float64)
    nearest = (queries @ sentences.T).argmax(axis=1)
    golden: dict[str, Any] = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "command": "HF_HUB_OFFLINE=1 ~/.cache/ollamapy/st-venv/bin/python "
        "scripts/make_minilm_golden.py",
        "versions": {
            "python": platform.python_version(),
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "max_seq_length": int(model.max_seq_length),
        "tokens_note": "word pieces before truncation, [CLS] and [SEP] included",
        "normalized": True,
        "decimals": DECIMALS,
        "sentences": [
            {"text": text, "tokens": len(model.tokenizer(text)["input_ids"]), "embedding": e}
            for text, e in zip(SENTENCES, _rounded(sentences), strict=True)
        ],
        "queries": [
            {"text": text, "nearest": int(n), "embedding": e}
            for text, n, e in zip(QUERIES, nearest, _rounded(queries), strict=True)
        ],
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(golden, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes)")
    for text, n in zip(QUERIES, nearest, strict=True):
        print(f"  {text!r} -> {SENTENCES[int(n)][:60]!r}")
    return 0


def _rounded(matrix: Any) -> list[list[float]]:
    return [[round(float(x), DECIMALS) for x in row] for row in matrix]


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The rows of `ollama list` and `ollama ps`, from the server's JSON, as Ollama formats them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ollamapy.cli.format import human_bytes, human_time, parse_timestamp

LIST_HEADER = ("NAME", "ID", "SIZE", "MODIFIED")
PS_HEADER = ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL")

Model = Mapping[str, Any]


def _short_id(model: Model) -> str:
    return str(model.get("digest", "")).removeprefix("sha256:")[:12]


def list_rows(
    models: Iterable[Model], prefix: str = "", now: datetime | None = None
) -> list[list[str]]:
    """`NAME ID SIZE MODIFIED`, keeping the models whose name starts with `prefix`."""
    now = now or datetime.now().astimezone()
    rows = []
    for model in models:
        name = str(model.get("name") or model.get("model") or "")
        if not name.lower().startswith(prefix.lower()):
            continue
        size = "-" if model.get("remote_model") else human_bytes(int(model.get("size") or 0))
        modified = human_time(str(model.get("modified_at") or ""), now)
        rows.append([name, _short_id(model), size, modified])
    return rows


def processor(size: int, size_vram: int) -> str:
    """Where a loaded model lives: `100% CPU`, `100% GPU` or `48%/52% CPU/GPU`."""
    if size_vram == 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size == 0:
        return "Unknown"
    cpu = int((size - size_vram) / size * 100 + 0.5)
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


def _until(model: Model, now: datetime) -> str:
    progress = model.get("load_progress")
    if isinstance(progress, int | float) and "expires_at" not in model:
        return f"Loading {int(progress * 100)}%"  # a runner still starting (ollamapy only)
    expires = parse_timestamp(str(model.get("expires_at") or ""))
    if expires is not None and expires.year > 1 and expires < now:
        return "Stopping..."
    return human_time(expires, now)


def ps_rows(
    models: Iterable[Model], prefix: str = "", now: datetime | None = None
) -> list[list[str]]:
    """`NAME ID SIZE PROCESSOR CONTEXT UNTIL` for the loaded models."""
    now = now or datetime.now().astimezone()
    rows = []
    for model in models:
        name = str(model.get("name") or model.get("model") or "")
        if not name.startswith(prefix):
            continue
        size = int(model.get("size") or 0)
        rows.append(
            [
                name,
                _short_id(model),
                human_bytes(size),
                processor(size, int(model.get("size_vram") or 0)),
                str(int(model.get("context_length") or 0)),
                _until(model, now),
            ]
        )
    return rows

"""The results file: building, ratio math, writing, reading and schema checking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import median, ratio

SCHEMA = "ollamapy-bench/1"
NOT_MEASURED = "not measured yet"
TOP_KEYS = ("schema", "created", "host", "machine", "config", "raw", "ours", "llama_server")
SUMMARY_KEYS = ("median", "min", "max", "n", "samples")
SIDE_METRICS = ("prompt_eval_tps", "decode_tps", "ttft_s", "load_s")
CLIENT_METRICS = (
    ("aggregate_tps", "aggregate"),
    ("aggregate_stream_tps", "aggregate_stream"),
    ("shared_prefix_tps", "shared_prefix"),
)
"""Figures measured per client count: (key in a side, prefix of its ratio keys)."""


def new_result(
    created: str, host: str, machine: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any]:
    """An empty result with every section present, ready to be filled in."""
    return {
        "schema": SCHEMA,
        "created": created,
        "host": host,
        "machine": machine,
        "config": config,
        "raw": None,
        "ours": {
            "aggregate_tps": {},
            "aggregate_sum_tps": {},
            "prefix_cache": {},
            "peak_rss_mib": {},
        },
        "llama_server": None,
        "ratios": {},
        "not_measured": {
            "embeddings_vs_sentence_transformers": NOT_MEASURED,
            "pull_vs_skopeo": NOT_MEASURED,
        },
        "notes": [],
    }


def _m(section: dict[str, Any] | None, key: str) -> float | None:
    """Median of `section[key]`, None when the section or metric is missing."""
    if not section:
        return None
    return median(section.get(key))


def compute_ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """ours / raw llama-bench and ours / llama-server, one entry per headline figure."""
    ours, raw, ref = result.get("ours"), result.get("raw"), result.get("llama_server")
    out: dict[str, float | None] = {
        "pp_vs_raw": ratio(_m(ours, "prompt_eval_tps"), _m(raw, "pp_tps")),
        "tg_vs_raw": ratio(_m(ours, "decode_tps"), _m(raw, "tg_tps")),
    }
    for metric in SIDE_METRICS:
        out[f"{metric}_vs_server"] = ratio(_m(ours, metric), _m(ref, metric))
    for key, name in CLIENT_METRICS:
        mine, theirs = (ours or {}).get(key, {}), (ref or {}).get(key, {})
        for clients in sorted(set(mine) | set(theirs), key=int):
            out[f"{name}_{clients}_vs_server"] = ratio(
                median(mine.get(clients)), median(theirs.get(clients))
            )
    out.update(_ceiling_ratios(result))
    prefix = (ours or {}).get("prefix_cache", {})
    out["prefix_turn2_vs_turn1"] = ratio(
        median(prefix.get("turn2_ttft_s")), median(prefix.get("turn1_ttft_s"))
    )
    return out


def _ceiling_ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """Each server's aggregate over the engine ceiling's (`bench.ceiling`), per client
    count: `aggregate_N_vs_ceiling` for ours, `server_aggregate_N_vs_ceiling` for
    llama-server."""
    ceiling = (result.get("ceiling") or {}).get("aggregate_tps", {})
    out: dict[str, float | None] = {}
    for prefix, side in (("", result.get("ours")), ("server_", result.get("llama_server"))):
        mine = (side or {}).get("aggregate_tps", {})
        for clients in sorted(set(mine) & set(ceiling), key=int):
            out[f"{prefix}aggregate_{clients}_vs_ceiling"] = ratio(
                median(mine.get(clients)), median(ceiling.get(clients))
            )
    return out


def _check_summary(path: str, value: Any, errors: list[str]) -> None:
    """A summary is None or a dict with numeric median/min/max and a sample list."""
    if value is None:
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a summary object")
        return
    for key in SUMMARY_KEYS:
        if key not in value:
            errors.append(f"{path}: missing {key}")
    bounds = [
        b for b in (value.get(k) for k in ("min", "median", "max")) if isinstance(b, int | float)
    ]
    if len(bounds) == 3 and not bounds[0] <= bounds[1] <= bounds[2]:
        errors.append(f"{path}: min <= median <= max does not hold")


def _check_side(name: str, side: Any, errors: list[str]) -> None:
    """Check one side (ours / llama_server) of a result."""
    if side is None:
        return
    if not isinstance(side, dict):
        errors.append(f"{name}: expected an object")
        return
    for metric in SIDE_METRICS:
        _check_summary(f"{name}.{metric}", side.get(metric), errors)
    for key, _ in CLIENT_METRICS:
        for clients, summary in side.get(key, {}).items():
            if not str(clients).isdigit():
                errors.append(f"{name}.{key}: key {clients!r} is not a client count")
            _check_summary(f"{name}.{key}.{clients}", summary, errors)


def validate(result: Any) -> list[str]:
    """Schema problems in a result, as human-readable strings; empty when it is valid."""
    if not isinstance(result, dict):
        return ["result: expected an object"]
    errors = [f"missing key {k}" for k in TOP_KEYS if k not in result]
    if result.get("schema") != SCHEMA:
        errors.append(f"schema: expected {SCHEMA!r}, got {result.get('schema')!r}")
    if not isinstance(result.get("machine"), dict):
        errors.append("machine: expected an object")
    raw = result.get("raw")
    if raw is not None:
        for key in ("pp_tps", "tg_tps"):
            _check_summary(f"raw.{key}", raw.get(key), errors)
    ceiling = result.get("ceiling")
    if ceiling is not None:
        for clients, summary in ceiling.get("aggregate_tps", {}).items():
            _check_summary(f"ceiling.aggregate_tps.{clients}", summary, errors)
    _check_side("ours", result.get("ours"), errors)
    _check_side("llama_server", result.get("llama_server"), errors)
    return errors


def write(result: dict[str, Any], path: Path) -> Path:
    """Validate, then write the result as indented JSON; returns the path."""
    problems = validate(result)
    if problems:
        raise ValueError("invalid bench result: " + "; ".join(problems))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def read(path: Path) -> dict[str, Any]:
    """Read a results file and check its schema."""
    result = json.loads(path.read_text(encoding="utf-8"))
    problems = validate(result)
    if problems:
        raise ValueError(f"{path}: " + "; ".join(problems))
    return dict(result)

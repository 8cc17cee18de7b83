"""PNG plots of a result, when matplotlib is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import Summary

COLORS = {
    "llama-bench": "#888888",
    "llama-server": "#44aa77",
    "ollamapy": "#4477aa",
    "engine ceiling": "#bbbbbb",
}


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _series(agg: dict[str, Summary]) -> tuple[list[int], list[float], list[list[float]]]:
    """x (clients), y (median) and asymmetric error bars (median-min, max-median)."""
    xs = sorted(agg, key=int)
    med = [agg[x]["median"] for x in xs]
    err = [
        [agg[x]["median"] - agg[x]["min"] for x in xs],
        [agg[x]["max"] - agg[x]["median"] for x in xs],
    ]
    return [int(x) for x in xs], med, err


def throughput_vs_clients(result: dict[str, Any], path: Path) -> Path | None:
    """Aggregate decode t/s against concurrent clients: ours, llama-server and the
    in-process engine ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = {
        "ollamapy": result.get("ours"),
        "llama-server": result.get("llama_server"),
        "engine ceiling": result.get("ceiling"),
    }
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    for label, side in sides.items():
        agg = {k: v for k, v in ((side or {}).get("aggregate_tps") or {}).items() if v}
        if agg:
            xs, ys, err = _series(agg)
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label, color=COLORS[label])
            plotted = True
    if not plotted:
        plt.close(fig)
        return None
    config = result.get("config", {})
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("aggregate decode tokens/s (wall clock)")
    ax.set_title(f"{config.get('model', '')}, {config.get('threads', '?')} threads")
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def single_stream(result: dict[str, Any], path: Path) -> Path | None:
    """Prompt eval and decode t/s: raw llama-bench, llama-server, ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw, ours, ref = (result.get(k) or {} for k in ("raw", "ours", "llama_server"))
    groups = {
        "llama-bench": (raw.get("pp_tps"), raw.get("tg_tps")),
        "llama-server": (ref.get("prompt_eval_tps"), ref.get("decode_tps")),
        "ollamapy": (ours.get("prompt_eval_tps"), ours.get("decode_tps")),
    }
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, idx, title in ((axes[0], 0, "prompt eval t/s"), (axes[1], 1, "decode t/s")):
        names = [n for n, v in groups.items() if v[idx]]
        values = [groups[n][idx]["median"] for n in names]  # type: ignore[index]
        ax.bar(names, values, color=[COLORS[n] for n in names])
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

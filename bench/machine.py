"""Facts about the machine a run was measured on."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path
from typing import Any

INTERESTING_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """CPU model, physical core count and the interesting flags from /proc/cpuinfo text."""
    model, flags = "unknown", set()
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            model = value
        elif key == "flags":
            flags = set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    return {
        "cpu_model": model,
        "physical_cores": len(cores) or None,
        "cpu_flags": [f for f in INTERESTING_FLAGS if f in flags],
    }


def mem_total_mib() -> float | None:
    """MemTotal from /proc/meminfo in MiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def facts(llama_cpp: str) -> dict[str, Any]:
    """Everything worth recording about this machine and software."""
    try:
        cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        cpu = {
            "cpu_model": platform.processor() or "unknown",
            "physical_cores": None,
            "cpu_flags": [],
        }
    return {
        **cpu,
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_mib": mem_total_mib(),
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "llama_cpp": llama_cpp,
        "load_avg_at_start": list(os.getloadavg()),
    }

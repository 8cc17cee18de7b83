"""The page committed in the package is the build of the committed `webui/` sources: a
change to `webui/` without `scripts/build_ui.sh` fails here, so nobody forgets to rebuild."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from ollamapy.server.ui import UI_DIR

ROOT = Path(__file__).resolve().parents[2]


def hasher() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "ui_source_hash", ROOT / "scripts" / "ui_source_hash.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_build_matches_the_sources() -> None:
    recorded = (UI_DIR / "SOURCE_HASH").read_text().strip()
    assert recorded == hasher().source_hash(ROOT / "webui"), (
        "webui/ changed since the page was built: run scripts/build_ui.sh and commit the result"
    )


def test_a_source_change_changes_the_hash(tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "webui"
    shutil.copytree(ROOT / "webui", copy, ignore=shutil.ignore_patterns("node_modules"))
    before = hasher().source_hash(copy)
    (copy / "src" / "style.css").write_text((copy / "src" / "style.css").read_text() + "\n/**/")
    assert hasher().source_hash(copy) != before


def test_the_built_page_names_only_files_it_ships() -> None:
    page = (UI_DIR / "index.html").read_text()
    names = re.findall(r'(?:src|href)="/ui/([^"]+)"', page)
    assert names, page
    for name in names:
        assert (UI_DIR / name).is_file(), name
    assert "http://" not in page and "https://" not in page  # nothing from another machine

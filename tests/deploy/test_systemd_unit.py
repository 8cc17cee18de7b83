"""`deploy/ollama.service`: the unit Ollama's Linux install writes, for our `ollama`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.processes import REPO

UNIT = REPO / "deploy" / "ollama.service"


def _sections() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_runs_ollama_serve_as_its_own_user_and_restarts() -> None:
    unit = _sections()
    assert unit["Service"]["ExecStart"] == "/usr/local/bin/ollama serve"
    assert (unit["Service"]["User"], unit["Service"]["Group"]) == ("ollama", "ollama")
    assert unit["Service"]["Restart"] == "always"
    assert unit["Unit"]["After"] == "network-online.target"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert "OLLAMA_MODELS" not in unit["Service"].get("Environment", "")  # store in $HOME


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd's own checker, with ExecStart pointed at this install's `ollama` (verify
    insists that the executable exists); any warning at all fails the test."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: install it with `apt-get install systemd`")
    installed = Path(sys.executable).parent / "ollama"
    assert installed.is_file(), f"{installed} is missing: run scripts/install.sh"
    unit = tmp_path / "ollama.service"
    text = UNIT.read_text().replace("/usr/local/bin/ollama", str(installed))
    unit.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")

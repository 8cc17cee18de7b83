"""What every `ollama` command pays before it starts: no module only `ollama run` needs."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_loads_without_prompt_toolkit() -> None:
    """prompt_toolkit (~70 ms) is imported by the interactive REPL only."""
    code = "import sys, ollamapy.cli.main; print('prompt_toolkit' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

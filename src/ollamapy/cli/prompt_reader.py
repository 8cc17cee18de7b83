"""The REPL's line reader on a terminal: prompt_toolkit, imported only by `ollama run`.

prompt_toolkit takes ~70 ms to import, which every other `ollama` command (and `ollama
serve`) would otherwise pay; the REPL loop itself (`repl`) only needs a `LineReader`.
"""

from __future__ import annotations

import os
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from ollamapy.cli.repl import ALT_PLACEHOLDER, ALT_PROMPT, PLACEHOLDER, PROMPT, Interrupted


def history_path() -> Path:
    return Path(os.path.expanduser("~")) / ".ollama" / "history"


class SwitchableHistory(FileHistory):
    """A history file that `/set nohistory` stops writing to."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(path))
        self.enabled = enabled

    def store_string(self, string: str) -> None:
        if self.enabled:
            super().store_string(string)


class PromptReader:
    """Reads lines with prompt_toolkit: placeholder, history file, Ctrl+C/Ctrl+D as Ollama."""

    def __init__(self, history: bool = True) -> None:
        self._history = SwitchableHistory(history_path(), enabled=history)
        self._placeholder = FormattedText([("fg:ansibrightblack", PLACEHOLDER)])
        self._alt_placeholder = FormattedText([("fg:ansibrightblack", ALT_PLACEHOLDER)])
        bindings = KeyBindings()

        @bindings.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            event.app.exit(exception=Interrupted(event.app.current_buffer.text))

        self._session: PromptSession[str] = PromptSession(
            history=self._history, key_bindings=bindings
        )

    def read(self, alt: bool) -> str:
        prompt = ALT_PROMPT if alt else PROMPT
        placeholder = self._alt_placeholder if alt else self._placeholder
        try:
            return self._session.prompt(prompt, placeholder=placeholder)
        except KeyboardInterrupt:
            raise Interrupted("") from None

    def set_history(self, enabled: bool) -> None:
        self._history.enabled = enabled

"""Parse Modelfile text into a `Modelfile`; pure, no filesystem access.

The grammar is Ollama's: one instruction per command, keywords case-insensitive, `#` starts
a comment only where a command could start, values bare or quoted (see `values`). Every
error is a `ModelfileError` whose message starts with `line N:` so the CLI can point at it.
"""

from __future__ import annotations

import codecs
import re

from ollamapy.errors import ModelfileError
from ollamapy.modelfile.model import MESSAGE_ROLES, Command, Instruction, Modelfile
from ollamapy.modelfile.values import BLANKS, line_end, read_value
from ollamapy.types.options import is_deprecated_parameter, parse_option_text

_KEYWORDS = {instruction.value: instruction for instruction in Instruction}
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_]+")
_WHITESPACE = BLANKS + "\n"


def parse(text: str) -> Modelfile:
    """Parse Modelfile text.

    >>> parse('FROM llama3.2\\nPARAMETER stop "<|eot_id|>"').parameters
    {'stop': ['<|eot_id|>']}
    """
    scanner = _Scanner(_normalize(text))
    commands: list[Command] = []
    while (command := _next_command(scanner)) is not None:
        commands.append(command)
    return Modelfile(tuple(commands))


def decode(data: bytes) -> str:
    """Decode a Modelfile read from disk: UTF-8 (BOM optional) or UTF-16 with a BOM."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelfileError(f"Modelfile is not valid text: {exc.reason}") from None


def _normalize(text: str) -> str:
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


class _Scanner:
    """A cursor over the text that keeps the current line number."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1

    def at_line_end(self) -> bool:
        return self.pos >= len(self.text) or self.text[self.pos] == "\n"

    def move_to(self, pos: int) -> None:
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos

    def skip(self, chars: str) -> None:
        pos = self.pos
        while pos < len(self.text) and self.text[pos] in chars:
            pos += 1
        self.move_to(pos)

    def word(self) -> str:
        """Read up to the next blank or newline."""
        start = pos = self.pos
        while pos < len(self.text) and self.text[pos] not in _WHITESPACE:
            pos += 1
        self.pos = pos
        return self.text[start:pos]


def _next_command(scanner: _Scanner) -> Command | None:
    if not _skip_to_command(scanner):
        return None
    line = scanner.line
    word = scanner.word()
    instruction = _KEYWORDS.get(word.lower())
    if instruction is None:
        expected = ", ".join(keyword.upper() for keyword in _KEYWORDS)
        raise _error(line, f"unknown instruction {word!r}; expected one of {expected}")
    key = _read_key(scanner, instruction, line)
    value = _read_value(scanner, instruction, line)
    if instruction is Instruction.PARAMETER:
        _check_parameter(key, value, line)
    return Command(instruction, value, key, line)


def _skip_to_command(scanner: _Scanner) -> bool:
    """Skip blank lines and comments; False at the end of the text."""
    while True:
        scanner.skip(_WHITESPACE)
        if scanner.pos >= len(scanner.text):
            return False
        if scanner.text[scanner.pos] != "#":
            return True
        scanner.move_to(line_end(scanner.text, scanner.pos))


def _read_key(scanner: _Scanner, instruction: Instruction, line: int) -> str:
    """Read the word between the keyword and the value: a parameter name or a role."""
    if instruction not in (Instruction.PARAMETER, Instruction.MESSAGE):
        return ""
    scanner.skip(BLANKS)
    key = scanner.word().lower()
    if not key:
        what = "a role" if instruction is Instruction.MESSAGE else "a name"
        raise _error(line, f"{instruction.upper()} needs {what} and a value")
    if instruction is Instruction.MESSAGE:
        if key not in MESSAGE_ROLES:
            roles = ", ".join(f'"{role}"' for role in MESSAGE_ROLES)
            raise _error(line, f"message role must be one of {roles}, not {key!r}")
    elif not _PARAMETER_NAME.fullmatch(key):
        raise _error(line, f"invalid parameter name {key!r}")
    return key


def _read_value(scanner: _Scanner, instruction: Instruction, line: int) -> str:
    scanner.skip(BLANKS)
    if scanner.at_line_end():
        raise _error(line, f"{instruction.upper()} needs a value")
    result = read_value(scanner.text, scanner.pos)
    if result is None:
        quote = '"""' if scanner.text.startswith('"""', scanner.pos) else '"'
        raise _error(line, f"unterminated {quote} value")
    value, end = result
    scanner.move_to(end)
    return value


def _check_parameter(key: str, value: str, line: int) -> None:
    if is_deprecated_parameter(key):
        return  # accepted and dropped (Modelfile.parameters warns), as Ollama does
    try:
        parse_option_text(key, value)
    except ValueError as exc:
        raise _error(line, str(exc)) from None


def _error(line: int, message: str) -> ModelfileError:
    return ModelfileError(f"line {line}: {message}")

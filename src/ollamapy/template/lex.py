"""Lexer for Go's `text/template` syntax.

It mirrors Go's state machine closely (text, then actions between `{{` and `}}`) because the
parser's error messages, and whitespace trimming, depend on exactly where tokens begin and end.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

LEFT, RIGHT = "{{", "}}"
TRIM_SPACES = " \t\r\n"


class Kind(enum.Enum):
    """Token kinds; keywords get their own kind so the parser can dispatch on them."""

    ERROR = "error"
    EOF = "EOF"
    TEXT = "text"
    COMMENT = "comment"
    LEFT_DELIM = "left delim"
    RIGHT_DELIM = "right delim"
    LEFT_PAREN = "("
    RIGHT_PAREN = ")"
    SPACE = "space"
    PIPE = "|"
    ASSIGN = "="
    DECLARE = ":="
    CHAR = "char"
    BOOL = "bool"
    NUMBER = "number"
    CHAR_CONSTANT = "char constant"
    STRING = "string"
    RAW_STRING = "raw string"
    FIELD = "field"
    IDENTIFIER = "identifier"
    VARIABLE = "variable"
    DOT = "."
    NIL = "nil"
    # keywords
    BLOCK = "block"
    BREAK = "break"
    CONTINUE = "continue"
    DEFINE = "define"
    ELSE = "else"
    END = "end"
    IF = "if"
    RANGE = "range"
    TEMPLATE = "template"
    WITH = "with"


_ANGLED = frozenset(
    {Kind.BLOCK, Kind.BREAK, Kind.CONTINUE, Kind.DOT, Kind.DEFINE, Kind.ELSE, Kind.END, Kind.IF}
    | {Kind.NIL, Kind.RANGE, Kind.TEMPLATE, Kind.WITH}
)

KEYWORDS = {
    k.value: k
    for k in (
        Kind.BLOCK,
        Kind.BREAK,
        Kind.CONTINUE,
        Kind.DEFINE,
        Kind.ELSE,
        Kind.END,
        Kind.IF,
        Kind.RANGE,
        Kind.TEMPLATE,
        Kind.WITH,
        Kind.NIL,
    )
}


@dataclass(frozen=True, slots=True)
class Token:
    """One lexeme: its kind, text, offset into the source and 1-based line."""

    kind: Kind
    value: str
    pos: int
    line: int

    def __str__(self) -> str:
        if self.kind is Kind.EOF:
            return "EOF"
        if self.kind is Kind.ERROR:
            return self.value
        if self.kind in _ANGLED:
            return f"<{self.value}>"
        if len(self.value) > 10:
            return _go_quote(self.value[:10]) + "..."
        return _go_quote(self.value)


def _go_quote(s: str) -> str:
    from ollamapy.template.gofmt import go_quote

    return go_quote(s)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


class Lexer:
    """Turns template text into tokens; `tokens()` returns them all, ending in EOF or ERROR."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.start = 0
        self.line = 1
        self.start_line = 1
        self.out: list[Token] = []
        self.paren_depth = 0
        self.inside = False

    # -- low-level helpers ---------------------------------------------------------------
    def peek(self, n: int = 0) -> str:
        i = self.pos + n
        return self.text[i] if i < len(self.text) else ""

    def next(self) -> str:
        c = self.peek()
        if c:
            self.pos += 1
            if c == "\n":
                self.line += 1
        return c

    def backup(self) -> None:
        self.pos -= 1
        if self.text[self.pos] == "\n":
            self.line -= 1

    def emit(self, kind: Kind) -> None:
        self.out.append(Token(kind, self.text[self.start : self.pos], self.start, self.start_line))
        self.ignore()

    def ignore(self) -> None:
        self.start = self.pos
        self.start_line = self.line

    def error(self, msg: str) -> None:
        self.out.append(Token(Kind.ERROR, msg, self.start, self.start_line))

    # -- states ----------------------------------------------------------------------------
    def tokens(self) -> list[Token]:
        """Run the lexer to the end; the last token is EOF or an ERROR."""
        ok = True
        while ok:
            ok = self.lex_text() if not self.inside else self.lex_inside()
        return self.out

    def lex_text(self) -> bool:
        i = self.text.find(LEFT, self.pos)
        if i < 0:
            self.pos = len(self.text)
            self._emit_text(self.pos)
            self.out.append(Token(Kind.EOF, "", self.pos, self.line))
            return False
        trim = self._is_trim_marker(i + 2)
        end = i
        if trim:
            end = len(self.text[:i].rstrip(TRIM_SPACES))
        self._advance_to(i)
        self._emit_text(end)
        return self.lex_left_delim(trim)

    def _is_trim_marker(self, i: int) -> bool:
        """`{{- ` trims only when the dash is followed by a space: `{{-3}}` is a number."""
        return self.text.startswith("-", i) and self.text[i + 1 : i + 2] in tuple(TRIM_SPACES)

    def _advance_to(self, i: int) -> None:
        self.line += self.text.count("\n", self.pos, i)
        self.pos = i

    def _emit_text(self, end: int) -> None:
        if end > self.start:
            value = self.text[self.start : end]
            self.out.append(Token(Kind.TEXT, value, self.start, self.start_line))
        self.ignore()

    def lex_left_delim(self, trim: bool) -> bool:
        delim_at = self.pos
        self.pos += len(LEFT) + (2 if trim else 0)
        if self.text.startswith("/*", self.pos):
            return self.lex_comment()
        self.out.append(Token(Kind.LEFT_DELIM, LEFT, delim_at, self.start_line))
        self.ignore()
        self.inside = True
        self.paren_depth = 0
        return True

    def lex_comment(self) -> bool:
        end = self.text.find("*/", self.pos + 2)
        if end < 0:
            self.error("unclosed comment")
            return False
        self._advance_to(end + 2)
        trim_after = self._at_right_trim()
        if not trim_after and not self.text.startswith(RIGHT, self.pos):
            self.error("comment ends before closing delimiter")
            return False
        self.pos += (2 if trim_after else 0) + len(RIGHT)
        self.ignore()
        if trim_after:
            self._skip_trailing_space()
        return True

    def _at_right_trim(self) -> bool:
        return (
            self.pos < len(self.text)
            and self.text[self.pos] in TRIM_SPACES
            and self.text.startswith("-" + RIGHT, self.pos + 1)
        )

    def _skip_trailing_space(self) -> None:
        n = len(self.text) - len(self.text[self.pos :].lstrip(TRIM_SPACES))
        self._advance_to(n)
        self.ignore()

    def lex_right_delim(self, trim: bool) -> bool:
        if trim:
            self._advance_to(self.pos + 2)
            self.ignore()
        self.pos += len(RIGHT)
        self.emit(Kind.RIGHT_DELIM)
        if trim:
            self._skip_trailing_space()
        self.inside = False
        return True

    def lex_inside(self) -> bool:
        trim = self._at_right_trim()
        if trim or self._at_right_delim():
            if self.paren_depth == 0:
                return self.lex_right_delim(trim)
            self.error("unclosed left paren")
            return False
        c = self.next()
        if c == "":
            self.error("unclosed action")
            return False
        handler = _INSIDE.get(c)
        if handler is not None:
            return handler(self, c)
        if c in TRIM_SPACES:
            return self.lex_space()
        if c == "+" or c == "-" or c.isdigit():
            self.backup()
            return self.lex_number()
        if _is_alnum(c):
            self.backup()
            return self.lex_identifier()
        if c.isprintable() and ord(c) < 128:
            self.emit(Kind.CHAR)
            return True
        self.error(f"unrecognized character in action: {_unicode_name(c)}")
        return False

    def lex_space(self) -> bool:
        while self.peek() in TRIM_SPACES and self.peek():
            if self._at_right_trim():
                break
            self.next()
        self.emit(Kind.SPACE)
        return True

    def lex_colon(self, _: str) -> bool:
        if self.next() != "=":
            self.error("expected :=")
            return False
        self.emit(Kind.DECLARE)
        return True

    def lex_simple(self, c: str) -> bool:
        kind = {"=": Kind.ASSIGN, "|": Kind.PIPE}[c]
        self.emit(kind)
        return True

    def lex_left_paren(self, _: str) -> bool:
        self.emit(Kind.LEFT_PAREN)
        self.paren_depth += 1
        return True

    def lex_right_paren(self, _: str) -> bool:
        self.emit(Kind.RIGHT_PAREN)
        self.paren_depth -= 1
        if self.paren_depth < 0:
            self.error("unexpected right paren")
            return False
        return True

    def lex_quote(self, _: str) -> bool:
        return self._lex_escaped('"', Kind.STRING, "unterminated quoted string")

    def lex_raw_quote(self, _: str) -> bool:
        end = self.text.find("`", self.pos)
        if end < 0:
            self.error("unterminated raw quoted string")
            return False
        self._advance_to(end + 1)
        self.emit(Kind.RAW_STRING)
        return True

    def lex_char(self, _: str) -> bool:
        return self._lex_escaped("'", Kind.CHAR_CONSTANT, "unterminated character constant")

    def _lex_escaped(self, closing: str, kind: Kind, unterminated: str) -> bool:
        """A "..." string or '...' char constant: backslash escapes, no newline inside."""
        while True:
            c = self.next()
            if c == "\\":
                c = self.next()
                if c not in ("", "\n"):
                    continue
            if c in ("", "\n"):
                self.error(unterminated)
                return False
            if c == closing:
                break
        self.emit(kind)
        return True

    def lex_dollar(self, _: str) -> bool:
        while _is_alnum(self.peek()):
            self.next()
        self.emit(Kind.VARIABLE)
        return True

    def lex_dot(self, _: str) -> bool:
        if self.peek().isdigit():
            self.backup()
            return self.lex_number()
        if not _is_alnum(self.peek()):
            self.emit(Kind.DOT)
            return True
        while _is_alnum(self.peek()):
            self.next()
        return self._check_terminator(Kind.FIELD)

    def lex_identifier(self) -> bool:
        while _is_alnum(self.peek()):
            self.next()
        word = self.text[self.start : self.pos]
        if word in KEYWORDS:
            kind = KEYWORDS[word]
        elif word in ("true", "false"):
            kind = Kind.BOOL
        else:
            kind = Kind.IDENTIFIER
        if word[0].isdigit():
            self.error(f"bad character {_unicode_name(word[0])}")
            return False
        return self._check_terminator(kind)

    def _check_terminator(self, kind: Kind) -> bool:
        c = self.peek()
        if c in ("", ".", ",", "|", ":", ")", "(") or c in TRIM_SPACES or self._at_right_delim():
            self.emit(kind)
            return True
        self.error(f"bad character {_unicode_name(c)}")
        return False

    def _at_right_delim(self) -> bool:
        return self.text.startswith(RIGHT, self.pos)

    def lex_number(self) -> bool:
        if self.peek() and self.peek() in "+-":
            self.next()
        digits = "0123456789_"
        if self.peek() == "0" and self.peek(1) and self.peek(1) in "xXoObB":  # "" is in any str
            self.next()
            marker = self.next().lower()
            digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[marker]
        while self.peek() and self.peek() in digits:
            self.next()
        if self.peek() == ".":
            self.next()
            while self.peek() and self.peek() in digits:
                self.next()
        exp = "pP" if digits.startswith("0123456789a") else "eE"
        if self.peek() and self.peek() in exp:
            self.next()
            if self.peek() and self.peek() in "+-":
                self.next()
            while self.peek() and self.peek() in "0123456789_":
                self.next()
        if self.peek() == "i":
            self.next()
        text = self.text[self.start : self.pos]
        if _is_alnum(self.peek()) or not any(ch.isdigit() for ch in text):
            self.next()
            self.error(f"bad number syntax: {_go_quote(self.text[self.start : self.pos])}")
            return False
        self.emit(Kind.NUMBER)
        return True


def _unicode_name(c: str) -> str:
    """Go's %#U rendering of a rune, used in lexer errors."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


_INSIDE = {
    ":": Lexer.lex_colon,
    "=": Lexer.lex_simple,
    "|": Lexer.lex_simple,
    "(": Lexer.lex_left_paren,
    ")": Lexer.lex_right_paren,
    '"': Lexer.lex_quote,
    "`": Lexer.lex_raw_quote,
    "'": Lexer.lex_char,
    "$": Lexer.lex_dollar,
    ".": Lexer.lex_dot,
}

"""Parser for Go templates: tokens -> a tree per template name.

Follows Go's recursive-descent parser (text/template/parse) so that what parses, what is
rejected, and the wording of rejections all match what Ollama accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from ollamapy.template import nodes as n
from ollamapy.template.errors import TemplateSyntaxError
from ollamapy.template.lex import Kind, Lexer, Token

OPERAND_KINDS = frozenset(
    {Kind.BOOL, Kind.CHAR_CONSTANT, Kind.DOT, Kind.FIELD, Kind.IDENTIFIER, Kind.NUMBER}
    | {Kind.NIL, Kind.RAW_STRING, Kind.STRING, Kind.VARIABLE, Kind.LEFT_PAREN}
)
CONSTANT_NODES = (n.BoolNode, n.DotNode, n.NilNode, n.NumberNode, n.StringNode)


MAX_DEPTH = 100
"""Nesting (of `if`/`range`/`with`/`else if` and of parentheses) a template may use. Go
allows 10000 parentheses; a Python parser and executor recurse per level, so a template
from a request or a Modelfile could exhaust the stack instead: real templates nest a few
levels."""


class Parser:
    """Parses one source text into `trees` (name -> body); nested defines add entries."""

    def __init__(self, name: str, text: str, funcs: Collection[str]) -> None:
        self.name = name
        self.tokens = Lexer(text).tokens()
        self.i = 0
        self.funcs = funcs
        self.vars: list[str] = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.line = 1
        self.trees: dict[str, n.ListNode] = {}

    # -- token stream ------------------------------------------------------------------
    def next(self) -> Token:
        tok = self.peek()
        self.i += 1
        self.line = tok.line
        return tok

    def backup(self, count: int = 1) -> None:
        self.i -= count

    def peek(self) -> Token:
        return self.tokens[min(self.i, len(self.tokens) - 1)]

    def next_non_space(self) -> Token:
        tok = self.next()
        while tok.kind is Kind.SPACE:
            tok = self.next()
        return tok

    def peek_non_space(self) -> Token:
        tok = self.next_non_space()
        self.backup()
        return tok

    def error(self, message: str) -> TemplateSyntaxError:
        return TemplateSyntaxError(self.name, self.line, message)

    def unexpected(self, tok: Token, context: str) -> TemplateSyntaxError:
        self.line = tok.line
        if tok.kind is Kind.ERROR:
            return self.error(str(tok))
        return self.error(f"unexpected {tok} in {context}")

    def expect(self, kind: Kind, context: str) -> Token:
        tok = self.next_non_space()
        if tok.kind is not kind:
            raise self.unexpected(tok, context)
        return tok

    # -- top level ------------------------------------------------------------------------
    def parse(self) -> dict[str, n.ListNode]:
        """Parse everything; the template's own body is stored under its name."""
        root = n.ListNode(self.peek().pos)
        while self.peek().kind is not Kind.EOF:
            if self.peek().kind is Kind.LEFT_DELIM:
                start = self.i
                self.next()
                if self.next_non_space().kind is Kind.DEFINE:
                    self.parse_definition()
                    continue
                self.i = start
            node = self.text_or_action()
            if isinstance(node, n.EndNode | n.ElseNode):
                raise self.error(f"unexpected {node}")
            root.nodes.append(node)
        self.add(self.name, root)
        return self.trees

    def add(self, name: str, body: n.ListNode) -> None:
        """Register a tree; an empty body never replaces an existing one (Go's rule)."""
        existing = self.trees.get(name)
        if existing is None or is_empty(existing):
            self.trees[name] = body
        elif not is_empty(body):
            raise self.error(f"template: multiple definition of template {quote(name)}")

    def parse_definition(self) -> None:
        context = "define clause"
        tok = self.next_non_space()
        if tok.kind not in (Kind.STRING, Kind.RAW_STRING):
            raise self.unexpected(tok, context)
        name = unquote(tok.value, self)
        self.expect(Kind.RIGHT_DELIM, context)
        body = self._fresh_scope(self.item_list_to_end, context)
        self.add(name, body)

    def _fresh_scope(self, fn: Callable[[str], n.ListNode], context: str) -> n.ListNode:
        saved = (self.vars, self.range_depth)
        self.vars, self.range_depth = ["$"], 0
        try:
            return fn(context)
        finally:
            self.vars, self.range_depth = saved

    def item_list_to_end(self, context: str) -> n.ListNode:
        body, end = self.item_list()
        if not isinstance(end, n.EndNode):
            raise self.error(f"unexpected {end} in {context}")
        return body

    def item_list(self) -> tuple[n.ListNode, n.Node]:
        """Nodes up to the next `{{end}}` or `{{else}}`, returned with that marker."""
        body = n.ListNode(self.peek_non_space().pos)
        while self.peek_non_space().kind is not Kind.EOF:
            node = self.text_or_action()
            if isinstance(node, n.EndNode | n.ElseNode):
                return body, node
            body.nodes.append(node)
        raise self.error("unexpected EOF")

    def text_or_action(self) -> n.Node:
        tok = self.next_non_space()
        if tok.kind is Kind.TEXT:
            return n.TextNode(tok.pos, tok.value)
        if tok.kind is Kind.LEFT_DELIM:
            return self.action()
        raise self.unexpected(tok, "input")

    # -- actions ---------------------------------------------------------------------------
    def action(self) -> n.Node:
        tok = self.next_non_space()
        handler = _CONTROLS.get(tok.kind)
        if handler is not None:
            return handler(self, tok)
        self.backup()
        start = self.peek()
        pipe = self.pipeline("command", Kind.RIGHT_DELIM)
        return n.ActionNode(start.pos, start.line, pipe)

    def end_control(self, tok: Token) -> n.Node:
        self.expect(Kind.RIGHT_DELIM, "end")
        return n.EndNode(tok.pos)

    def else_control(self, tok: Token) -> n.Node:
        peek = self.peek_non_space()
        if peek.kind in (Kind.IF, Kind.WITH):
            return n.ElseNode(peek.pos, peek.line)
        close = self.expect(Kind.RIGHT_DELIM, "else")
        return n.ElseNode(close.pos, close.line)

    def loop_control(self, tok: Token) -> n.Node:
        word = tok.value
        after = self.next_non_space()
        if after.kind is not Kind.RIGHT_DELIM:
            raise self.unexpected(after, "{{" + word + "}}")
        if self.range_depth == 0:
            raise self.error("{{" + word + "}} outside {{range}}")
        cls = n.BreakNode if tok.kind is Kind.BREAK else n.ContinueNode
        return cls(tok.pos, tok.line)

    def branch_control(self, tok: Token) -> n.Node:
        context = tok.value
        saved_vars = len(self.vars)
        self.deeper()
        try:
            pipe = self.pipeline(context, Kind.RIGHT_DELIM)
            self.range_depth += context == "range"
            body, end = self.item_list()
            self.range_depth -= context == "range"
            else_body = self._else_part(context, end)
        finally:
            del self.vars[saved_vars:]
            self.depth -= 1
        return _BRANCHES[tok.kind](pipe.pos, pipe.line, pipe, body, else_body)

    def deeper(self) -> None:
        """One more level of nesting; too many is a syntax error (see `MAX_DEPTH`)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("max expression depth exceeded")

    def _else_part(self, context: str, end: n.Node) -> n.ListNode | None:
        if not isinstance(end, n.ElseNode):
            return None
        chained = {"if": Kind.IF, "with": Kind.WITH}.get(context)
        if chained is not None and self.peek().kind is chained:
            # `{{else if ...}}` is `{{else}}{{if ...}}...{{end}}` sharing the outer `{{end}}`.
            inner = self.next()
            return n.ListNode(end.pos, [self.branch_control(inner)])
        else_body, close = self.item_list()
        if not isinstance(close, n.EndNode):
            raise self.error(f"expected end; found {close}")
        return else_body

    def template_control(self, tok: Token) -> n.Node:
        context = "template clause"
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, context)
        pipe: n.PipeNode | None = None
        if self.next_non_space().kind is not Kind.RIGHT_DELIM:
            self.backup()
            pipe = self.pipeline(context, Kind.RIGHT_DELIM)
        return n.TemplateNode(name_tok.pos, name_tok.line, name, pipe)

    def block_control(self, tok: Token) -> n.Node:
        context = "block clause"
        name_tok = self.next_non_space()
        name = self.template_name(name_tok, context)
        pipe = self.pipeline(context, Kind.RIGHT_DELIM)
        body = self._fresh_scope(self.item_list_to_end, context)
        self.add(name, body)
        return n.TemplateNode(name_tok.pos, name_tok.line, name, pipe)

    def template_name(self, tok: Token, context: str) -> str:
        if tok.kind not in (Kind.STRING, Kind.RAW_STRING):
            raise self.unexpected(tok, context)
        return unquote(tok.value, self)

    # -- pipelines -------------------------------------------------------------------------
    def pipeline(self, context: str, end: Kind) -> n.PipeNode:
        start = self.peek_non_space()
        pipe = n.PipeNode(start.pos, start.line)
        self.declarations(pipe, context)
        while True:
            tok = self.next_non_space()
            if tok.kind is end:
                self.check_pipeline(pipe, context)
                return pipe
            if tok.kind not in OPERAND_KINDS:
                raise self.unexpected(tok, context)
            self.backup()
            pipe.cmds.append(self.command())

    def declarations(self, pipe: n.PipeNode, context: str) -> None:
        """Consume `$x :=`, `$x =` or (range only) `$i, $v :=` at the head of a pipeline."""
        while (var := self.peek_non_space()).kind is Kind.VARIABLE:
            start = self.i
            self.next_non_space()
            after = self.peek_non_space()
            if after.kind in (Kind.ASSIGN, Kind.DECLARE):
                self.next_non_space()
                pipe.is_assign = after.kind is Kind.ASSIGN
                self._declare(pipe, var)
                return
            if after.kind is Kind.CHAR and after.value == ",":
                self.next_non_space()
                self._declare(pipe, var)
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_non_space().kind in (Kind.VARIABLE, Kind.RIGHT_DELIM):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.i = start
            return

    def _declare(self, pipe: n.PipeNode, var: Token) -> None:
        pipe.decl.append(n.VariableNode(var.pos, [var.value]))
        self.vars.append(var.value)

    def check_pipeline(self, pipe: n.PipeNode, context: str) -> None:
        if not pipe.cmds:
            raise self.error(f"missing value for {context}")
        for stage, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], CONSTANT_NODES):
                raise self.error(f"non executable command in pipeline stage {stage}")

    def command(self) -> n.CommandNode:
        cmd = n.CommandNode(self.peek_non_space().pos)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind is Kind.SPACE:
                continue
            if tok.kind in (Kind.RIGHT_DELIM, Kind.RIGHT_PAREN):
                self.backup()
            elif tok.kind is not Kind.PIPE:
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> n.Node | None:
        node = self.term()
        if node is None or self.peek().kind is not Kind.FIELD:
            return node
        fields: list[str] = []
        # Go positions a chained field at its first added field (`.B` in `.A.B`).
        pos = self.peek().pos
        while self.peek().kind is Kind.FIELD:
            fields.append(self.next().value[1:])
        if isinstance(node, n.FieldNode):
            return n.FieldNode(pos, [*node.idents, *fields])
        if isinstance(node, n.VariableNode):
            return n.VariableNode(pos, [*node.idents, *fields])
        if isinstance(node, CONSTANT_NODES):
            raise self.error(f"unexpected . after term {quote(str(node))}")
        return n.ChainNode(pos, node, fields)

    def term(self) -> n.Node | None:
        tok = self.next_non_space()
        maker = _TERMS.get(tok.kind)
        if maker is None:
            self.backup()
            return None
        return maker(self, tok)

    def identifier(self, tok: Token) -> n.Node:
        if tok.value not in self.funcs:
            raise self.error(f"function {quote(tok.value)} not defined")
        return n.IdentifierNode(tok.pos, tok.value)

    def variable(self, tok: Token) -> n.Node:
        if tok.value not in self.vars:
            raise self.error(f"undefined variable {quote(tok.value)}")
        return n.VariableNode(tok.pos, [tok.value])

    def number(self, tok: Token) -> n.Node:
        return n.NumberNode(tok.pos, tok.value, parse_number(tok, self))

    def string(self, tok: Token) -> n.Node:
        return n.StringNode(tok.pos, tok.value, unquote(tok.value, self))

    def paren(self, tok: Token) -> n.Node:
        self.deeper()
        try:
            return self.pipeline("parenthesized pipeline", Kind.RIGHT_PAREN)
        finally:
            self.depth -= 1


_BRANCHES: dict[Kind, type[n.BranchNode]] = {
    Kind.IF: n.IfNode,
    Kind.RANGE: n.RangeNode,
    Kind.WITH: n.WithNode,
}

_CONTROLS: dict[Kind, Callable[[Parser, Token], n.Node]] = {
    Kind.BLOCK: Parser.block_control,
    Kind.BREAK: Parser.loop_control,
    Kind.CONTINUE: Parser.loop_control,
    Kind.ELSE: Parser.else_control,
    Kind.END: Parser.end_control,
    Kind.IF: Parser.branch_control,
    Kind.RANGE: Parser.branch_control,
    Kind.TEMPLATE: Parser.template_control,
    Kind.WITH: Parser.branch_control,
}

_TERMS: dict[Kind, Callable[[Parser, Token], n.Node]] = {
    Kind.IDENTIFIER: Parser.identifier,
    Kind.DOT: lambda p, t: n.DotNode(t.pos),
    Kind.NIL: lambda p, t: n.NilNode(t.pos),
    Kind.VARIABLE: Parser.variable,
    Kind.FIELD: lambda p, t: n.FieldNode(t.pos, [t.value[1:]]),
    Kind.BOOL: lambda p, t: n.BoolNode(t.pos, t.value == "true"),
    Kind.CHAR_CONSTANT: Parser.number,
    Kind.NUMBER: Parser.number,
    Kind.LEFT_PAREN: Parser.paren,
    Kind.STRING: Parser.string,
    Kind.RAW_STRING: Parser.string,
}


def is_empty(node: n.Node) -> bool:
    """Go's IsEmptyTree: only whitespace text (and nothing else) counts as empty."""
    if isinstance(node, n.ListNode):
        return all(is_empty(c) for c in node.nodes)
    return isinstance(node, n.TextNode) and not node.text.strip()


def quote(s: str) -> str:
    from ollamapy.template.gofmt import go_quote

    return go_quote(s)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)


def unquote(text: str, parser: Parser) -> str:
    """Go's strconv.Unquote for "...", `...` and '...' literals."""
    if text.startswith("`"):
        return text[1:-1].replace("\r", "")
    quote_char = text[0]
    body = text[1:-1]

    def replace(m: re.Match[str]) -> str:
        esc = m.group(1)
        if len(esc) > 1 and esc[0] in "xuU":  # a lone `\x` (no hex digits) is invalid
            value = int(esc[1:], 16)
            if esc[0] != "x" and (value > 0x10FFFF or 0xD800 <= value <= 0xDFFF):
                raise parser.error("invalid syntax")  # not a Unicode scalar value
            return chr(value)
        if len(esc) == 3:
            value = int(esc, 8)
            if value > 0xFF:
                raise parser.error("invalid syntax")
            return chr(value)
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        if esc in ("\\", quote_char):
            return esc
        raise parser.error("invalid syntax")

    return _ESCAPE_RE.sub(replace, body)


def parse_number(tok: Token, parser: Parser) -> int | float:
    """Value of a numeric constant: int unless its spelling makes it a float (Go's rule)."""
    text = tok.value
    if tok.kind is Kind.CHAR_CONSTANT:
        chars = unquote(text, parser)
        if len(chars) != 1:
            raise parser.error(f"malformed character constant: {text}")
        return ord(chars)
    if text.endswith("i"):
        raise parser.error(f"complex numbers are not supported: {quote(text)}")
    clean = text.replace("_", "")
    is_hex = clean.lstrip("+-").lower().startswith("0x")
    try:
        if is_hex or not any(c in clean for c in ".eEpP"):
            return _parse_int(clean)
        return float.fromhex(clean) if is_hex else float(clean)
    except ValueError:
        raise parser.error(f"illegal number syntax: {quote(text)}") from None


def _parse_int(text: str) -> int:
    body = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if len(body) > 1 and body[0] == "0" and body[1].isdigit():
        return sign * int(body, 8)
    return sign * int(body, 0)

"""Executor: walks a parsed template over Python data the way Go's text/template does.

Data model: dicts are Go maps (`.Key` is a key lookup; a missing key is "no value"), lists and
tuples are slices, other objects are structs (`.Name` is an attribute; a callable attribute is a
method). `MISSING` stands for Go's invalid value so `{{ .A.B }}` with no `A` stays silent while
an explicit nil `A` fails, exactly as in Go.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ollamapy.template import nodes as n
from ollamapy.template.errors import TemplateExecError
from ollamapy.template.funcs import MISSING, Func, FuncError, functions, truth
from ollamapy.template.gofmt import format_value

MAX_DEPTH = 100


class _Break(Exception):
    """Unwinds to the innermost range on `{{break}}`."""


class _Continue(Exception):
    """Unwinds to the innermost range on `{{continue}}`."""


@dataclass
class Source:
    """What errors need to locate a node: the parse name and the full text."""

    name: str
    text: str


@dataclass
class State:
    """One template invocation: its name, variable stack and the node being evaluated."""

    tree_name: str
    variables: list[tuple[str, object]]
    node: n.Node | None = None
    depth: int = 0


MAX_STEPS = 1_000_000
"""Nodes one execution may walk. Go has no such bound, but a template comes from whoever
created the model: `{{range 1000000000000}}{{end}}` would hold a worker thread for days.
A chat template walks a few dozen nodes per message: 1500 messages and 30 tools took 22k
steps in the conformance templates, so real ones stay far below it."""
MAX_OUTPUT = 1 << 28
"""Characters one execution may write (a prompt this long could never fit a context)."""


@dataclass
class Executor:
    """Runs trees; one instance per `Template.execute` call."""

    source: Source
    trees: Mapping[str, n.ListNode]
    today: Callable[[], datetime.date]
    out: list[str] = field(default_factory=list)
    steps: int = 0
    written: int = 0

    def __post_init__(self) -> None:
        self.funcs: dict[str, Func] = functions(self.today)

    def run(self, tree_name: str, data: object) -> str:
        state = State(tree_name, [("$", data)])
        self.walk(state, data, self.trees[tree_name])
        return "".join(self.out)

    # -- errors ----------------------------------------------------------------------------
    def fail(self, state: State, message: str) -> TemplateExecError:
        node = state.node
        pos = node.pos if node is not None else 0
        before = self.source.text[:pos]
        line = before.count("\n") + 1
        column = len(before[before.rfind("\n") + 1 :].encode())
        context = str(node) if node is not None else ""
        if len(context) > 20:
            context = context[:20] + "..."
        return TemplateExecError(self.source.name, line, column, state.tree_name, context, message)

    # -- statements ------------------------------------------------------------------------
    def walk(self, state: State, dot: object, node: n.Node) -> None:
        state.node = node
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self.fail(state, f"execution exceeded {MAX_STEPS} steps")
        handler = _WALKERS.get(type(node))
        if handler is None:
            raise self.fail(state, f"unknown node: {node}")
        handler(self, state, dot, node)

    def walk_list(self, state: State, dot: object, node: n.Node) -> None:
        assert isinstance(node, n.ListNode)
        for child in node.nodes:
            self.walk(state, dot, child)

    def walk_text(self, state: State, dot: object, node: n.Node) -> None:
        assert isinstance(node, n.TextNode)
        self.write(state, node.text)

    def walk_action(self, state: State, dot: object, node: n.Node) -> None:
        assert isinstance(node, n.ActionNode)
        value = self.eval_pipeline(state, dot, node.pipe)
        if not node.pipe.decl:
            state.node = node
            self.write(state, printable(value))

    def write(self, state: State, text: str) -> None:
        self.written += len(text)
        if self.written > MAX_OUTPUT:
            raise self.fail(state, f"output exceeded {MAX_OUTPUT} characters")
        self.out.append(text)

    def walk_if_with(self, state: State, dot: object, node: n.Node) -> None:
        assert isinstance(node, n.IfNode | n.WithNode)
        mark = len(state.variables)
        try:
            value = self.eval_pipeline(state, dot, node.pipe)
            if truth(value):
                self.walk(state, value if isinstance(node, n.WithNode) else dot, node.body)
            elif node.else_body is not None:
                self.walk(state, dot, node.else_body)
        finally:
            del state.variables[mark:]

    def walk_range(self, state: State, dot: object, node: n.Node) -> None:
        assert isinstance(node, n.RangeNode)
        mark = len(state.variables)
        try:
            value = self.eval_commands(state, dot, node.pipe)
            ran = False
            for key, elem in self.iterate(state, node, value):
                ran = True
                if not self.range_once(state, node, key, elem):
                    break
            if not ran and node.else_body is not None:
                self.walk(state, dot, node.else_body)
        finally:
            del state.variables[mark:]

    def iterate(
        self, state: State, node: n.RangeNode, value: object
    ) -> Iterator[tuple[object, object]]:
        """(index, element) pairs: slices in order, maps by sorted key, ints as 0..n-1."""
        if value is None or value is MISSING:
            return iter(())
        go_items = getattr(value, "go_items", None)
        if callable(go_items):
            return iter(go_items())
        if isinstance(value, Mapping):
            from ollamapy.template.gofmt import sorted_items

            return iter(sorted_items(value))
        if isinstance(value, Sequence) and not isinstance(value, str):
            return iter(enumerate(value))
        if isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                raise self.fail(state, f"can't use {value} to iterate over more than one variable")
            return ((i, i) for i in range(value))
        raise self.fail(state, f"range can't iterate over {format_value(value)}")

    def range_once(self, state: State, node: n.RangeNode, key: object, elem: object) -> bool:
        """Run the body for one element; False means `{{break}}` ended the loop."""
        mark = len(state.variables)
        decl = [v.idents[0] for v in node.pipe.decl]
        bindings = [(decl[0], key), (decl[1], elem)] if len(decl) > 1 else [(d, elem) for d in decl]
        for name, value in bindings:
            if node.pipe.is_assign:
                self.set_var(state, name, value)
            else:
                state.variables.append((name, value))
        try:
            self.walk(state, elem, node.body)
        except _Break:
            return False
        except _Continue:
            pass
        finally:
            del state.variables[mark:]
        return True

    def walk_break(self, state: State, dot: object, node: n.Node) -> None:
        raise _Break

    def walk_continue(self, state: State, dot: object, node: n.Node) -> None:
        raise _Continue

    def walk_template(self, state: State, dot: object, node: n.Node) -> None:
        assert isinstance(node, n.TemplateNode)
        tree = self.trees.get(node.name)
        if tree is None:
            raise self.fail(
                state, f"template {format_value(node.name)!r} not defined".replace("'", '"')
            )
        if state.depth >= MAX_DEPTH:
            raise self.fail(state, f"exceeded maximum template depth ({MAX_DEPTH})")
        value = MISSING if node.pipe is None else self.eval_pipeline(state, dot, node.pipe)
        inner = State(node.name, [("$", value)], depth=state.depth + 1)
        self.walk(inner, value, tree)

    # -- variables -------------------------------------------------------------------------
    def set_var(self, state: State, name: str, value: object) -> None:
        for i in range(len(state.variables) - 1, -1, -1):
            if state.variables[i][0] == name:
                state.variables[i] = (name, value)
                return
        raise self.fail(state, f"undefined variable: {name}")

    def var_value(self, state: State, name: str) -> object:
        for var_name, value in reversed(state.variables):
            if var_name == name:
                return value
        raise self.fail(state, f"undefined variable: {name}")

    # -- expressions -----------------------------------------------------------------------
    def eval_pipeline(self, state: State, dot: object, pipe: n.PipeNode) -> object:
        value = self.eval_commands(state, dot, pipe)
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(state, var.idents[0], value)
            else:
                state.variables.append((var.idents[0], value))
        return value

    def eval_commands(self, state: State, dot: object, pipe: n.PipeNode) -> object:
        state.node = pipe
        value: object = MISSING
        final: object = _NO_FINAL
        for cmd in pipe.cmds:
            value = self.eval_command(state, dot, cmd, final)
            final = value
        return value

    def eval_command(self, state: State, dot: object, cmd: n.CommandNode, final: object) -> object:
        first = cmd.args[0]
        args = cmd.args[1:]
        if isinstance(first, n.FieldNode):
            return self.eval_field_chain(state, dot, dot, first, first.idents, args, final)
        if isinstance(first, n.VariableNode):
            state.node = first
            value = self.var_value(state, first.idents[0])
            if len(first.idents) == 1:
                self.not_a_function(state, args, final)
                return value
            return self.eval_field_chain(state, dot, value, first, first.idents[1:], args, final)
        if isinstance(first, n.ChainNode):
            return self.eval_chain(state, dot, first, args, final)
        if isinstance(first, n.IdentifierNode):
            return self.eval_function(state, dot, first, cmd, args, final)
        state.node = first
        self.not_a_function(state, args, final)
        if isinstance(first, n.PipeNode):
            return self.eval_pipeline(state, dot, first)
        if isinstance(first, n.NilNode):
            raise self.fail(state, "nil is not a command")
        return self.constant(dot, first)

    def not_a_function(self, state: State, args: Sequence[n.Node], final: object) -> None:
        if args or final is not _NO_FINAL:
            raise self.fail(state, f"can't give argument to non-function {state.node}")

    def constant(self, dot: object, node: n.Node) -> object:
        if isinstance(node, n.DotNode):
            return dot
        if isinstance(node, n.BoolNode | n.NumberNode | n.StringNode):
            return node.value
        return None

    def eval_chain(
        self, state: State, dot: object, chain: n.ChainNode, args: Sequence[n.Node], final: object
    ) -> object:
        state.node = chain
        if isinstance(chain.node, n.NilNode):
            raise self.fail(state, "indirection through explicit nil in " + str(chain))
        value = self.eval_arg(state, dot, chain.node)
        return self.eval_field_chain(state, dot, value, chain, chain.fields, args, final)

    def eval_field_chain(
        self,
        state: State,
        dot: object,
        receiver: object,
        node: n.Node,
        idents: Sequence[str],
        args: Sequence[n.Node],
        final: object,
    ) -> object:
        state.node = node
        for name in idents[:-1]:
            receiver = self.eval_field(state, dot, name, receiver, (), _NO_FINAL)
        return self.eval_field(state, dot, idents[-1], receiver, args, final)

    def eval_field(
        self,
        state: State,
        dot: object,
        name: str,
        receiver: object,
        args: Sequence[n.Node],
        final: object,
    ) -> object:
        has_args = bool(args) or final is not _NO_FINAL
        if receiver is MISSING:
            return MISSING
        if receiver is None:
            raise self.fail(state, f"nil pointer evaluating interface {{}}.{name}")
        if isinstance(receiver, Mapping):
            if has_args:
                raise self.fail(state, f"{name} is not a method but has arguments")
            return receiver.get(name, MISSING)
        attr = MISSING
        if not _is_basic(receiver) and not name.startswith("_"):
            attr = getattr(receiver, name, MISSING)  # one lookup (a struct view's is a dict's)
        if attr is not MISSING:
            if callable(attr) and not isinstance(attr, type):
                return self.call(state, dot, name, attr, args, final, at=state.node)
            if has_args:
                raise self.fail(state, f"{name} has arguments but cannot be invoked as function")
            return attr
        type_name = "interface {}" if _is_basic(receiver) else type(receiver).__name__
        raise self.fail(state, f"can't evaluate field {name} in type {type_name}")

    def eval_function(
        self,
        state: State,
        dot: object,
        ident: n.IdentifierNode,
        cmd: n.CommandNode,
        args: Sequence[n.Node],
        final: object,
    ) -> object:
        state.node = ident
        if ident.name in ("and", "or"):
            return self.eval_and_or(state, dot, ident.name, cmd, args, final)
        func = self.funcs.get(ident.name)
        if func is None:
            raise self.fail(state, f"{ident.name!r} is not a defined function".replace("'", '"'))
        return self.call(state, dot, ident.name, func, args, final, at=cmd)

    def eval_and_or(
        self,
        state: State,
        dot: object,
        name: str,
        cmd: n.CommandNode,
        args: Sequence[n.Node],
        final: object,
    ) -> object:
        """`and`/`or` stop evaluating at the first argument that decides the result."""
        count = len(args) + (final is not _NO_FINAL)
        if count < 1:
            state.node = cmd
            raise self.fail(state, f"wrong number of args for {name}: want at least 1 got 0")
        want = name == "or"
        value: object = MISSING
        for arg in args:
            value = _plain(self.eval_arg(state, dot, arg))
            if truth(value) == want:
                return value
        if final is not _NO_FINAL:
            value = _plain(final)
        return value

    def call(
        self,
        state: State,
        dot: object,
        name: str,
        fn: Func | Callable[..., object],
        args: Sequence[n.Node],
        final: object,
        at: n.Node | None,
    ) -> object:
        """Evaluate arguments (a piped value goes last) and call; errors point at `at`."""
        caller = state.node
        if isinstance(fn, Func):
            self.check_arity(state, name, fn, len(args) + (final is not _NO_FINAL))
        values = [_plain(self.eval_arg(state, dot, a)) for a in args]
        if final is not _NO_FINAL:
            values.append(_plain(final))
        if isinstance(fn, Func):
            if fn.string_first and not isinstance(values[0], str):
                state.node = args[0] if args else caller
                raise self.fail(state, f"expected string; found {format_value(values[0])}")
            fn = fn.fn
        state.node = at
        try:
            return fn(*values)
        except FuncError as err:
            raise self.fail(state, f"error calling {name}: {err}") from None
        except TypeError as err:
            raise self.fail(state, f"error calling {name}: {err}") from None

    def check_arity(self, state: State, name: str, fn: Func, got: int) -> None:
        if fn.max_args is None and got < fn.min_args:
            want = f"at least {fn.min_args}"
        elif fn.max_args is not None and not fn.min_args <= got <= fn.max_args:
            want = str(fn.max_args)
        else:
            return
        raise self.fail(state, f"wrong number of args for {name}: want {want} got {got}")

    def eval_arg(self, state: State, dot: object, node: n.Node) -> object:
        state.node = node
        if isinstance(node, n.FieldNode):
            return self.eval_field_chain(state, dot, dot, node, node.idents, (), _NO_FINAL)
        if isinstance(node, n.VariableNode):
            value = self.var_value(state, node.idents[0])
            if len(node.idents) == 1:
                return value
            return self.eval_field_chain(state, dot, value, node, node.idents[1:], (), _NO_FINAL)
        if isinstance(node, n.PipeNode):
            return self.eval_pipeline(state, dot, node)
        if isinstance(node, n.IdentifierNode):
            cmd = n.CommandNode(node.pos, [node])
            return self.eval_function(state, dot, node, cmd, (), _NO_FINAL)
        if isinstance(node, n.ChainNode):
            return self.eval_chain(state, dot, node, (), _NO_FINAL)
        return self.constant(dot, node)


class _NoFinal:
    """Marks that no piped-in value exists (distinct from a piped nil)."""


_NO_FINAL = _NoFinal()


def _plain(value: object) -> object:
    """Functions receive Go's nil where the template had no value."""
    return None if value is MISSING else value


def _is_basic(value: object) -> bool:
    return isinstance(value, _BASIC)


_BASIC = (bool, int, float, str, list, tuple)


def printable(value: object) -> str:
    """How an action prints its value: nil and missing both read `<no value>`."""
    if value is None or value is MISSING:
        return "<no value>"
    return format_value(value)


_WALKERS: dict[type, Callable[[Executor, State, object, n.Node], None]] = {
    n.ListNode: Executor.walk_list,
    n.TextNode: Executor.walk_text,
    n.ActionNode: Executor.walk_action,
    n.IfNode: Executor.walk_if_with,
    n.WithNode: Executor.walk_if_with,
    n.RangeNode: Executor.walk_range,
    n.BreakNode: Executor.walk_break,
    n.ContinueNode: Executor.walk_continue,
    n.TemplateNode: Executor.walk_template,
}

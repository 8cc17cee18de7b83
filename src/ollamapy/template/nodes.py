"""Parse-tree nodes for Go templates.

Every node keeps its source offset so executor errors can name line and column, and renders
back to template syntax (`str(node)`) the way Go does, because Go quotes that text in errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class Node:
    """Base of all nodes; `pos` is the character offset in the template source."""

    pos: int

    def children(self) -> list[Node]:
        """Direct sub-nodes, for tree walks such as `Template.uses`."""
        return []


@dataclass(eq=False)
class TextNode(Node):
    text: str

    def __str__(self) -> str:
        from ollamapy.template.gofmt import go_quote

        return go_quote(self.text)


@dataclass(eq=False)
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)

    def children(self) -> list[Node]:
        return list(self.nodes)

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(eq=False)
class FieldNode(Node):
    """`.A.B`: a chain of field names looked up on dot."""

    idents: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass(eq=False)
class VariableNode(Node):
    """`$x.A.B`: idents[0] is the variable name, the rest are fields."""

    idents: list[str]

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass(eq=False)
class ChainNode(Node):
    """`(pipe).A.B`: fields looked up on the result of any term."""

    node: Node
    fields: list[str]

    def children(self) -> list[Node]:
        return [self.node]

    def __str__(self) -> str:
        inner = str(self.node)
        if isinstance(self.node, PipeNode):
            inner = f"({inner})"
        return inner + "".join("." + f for f in self.fields)


@dataclass(eq=False)
class IdentifierNode(Node):
    """A function name."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(eq=False)
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass(eq=False)
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass(eq=False)
class BoolNode(Node):
    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(eq=False)
class NumberNode(Node):
    """A numeric or character constant; Go decides int versus float from its spelling."""

    text: str
    value: int | float

    def __str__(self) -> str:
        return self.text


@dataclass(eq=False)
class StringNode(Node):
    quoted: str
    value: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(eq=False)
class CommandNode(Node):
    args: list[Node] = field(default_factory=list)

    def children(self) -> list[Node]:
        return list(self.args)

    def __str__(self) -> str:
        parts = []
        for arg in self.args:
            text = str(arg)
            parts.append(f"({text})" if isinstance(arg, PipeNode) else text)
        return " ".join(parts)


@dataclass(eq=False)
class PipeNode(Node):
    """`$x := a | b`: optional declarations, then commands joined by `|`."""

    line: int
    decl: list[VariableNode] = field(default_factory=list)
    is_assign: bool = False
    cmds: list[CommandNode] = field(default_factory=list)

    def children(self) -> list[Node]:
        return [*self.decl, *self.cmds]

    def __str__(self) -> str:
        head = ""
        if self.decl:
            op = " = " if self.is_assign else " := "
            head = ", ".join(str(v) for v in self.decl) + op
        return head + " | ".join(str(c) for c in self.cmds)


@dataclass(eq=False)
class ActionNode(Node):
    line: int
    pipe: PipeNode

    def children(self) -> list[Node]:
        return [self.pipe]

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(eq=False)
class BranchNode(Node):
    """Shared shape of if/range/with: a pipeline, a body and an optional else body."""

    line: int
    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None = None

    keyword = "branch"

    def children(self) -> list[Node]:
        nodes: list[Node] = [self.pipe, self.body]
        if self.else_body is not None:
            nodes.append(self.else_body)
        return nodes

    def __str__(self) -> str:
        text = "{{" + f"{self.keyword} {self.pipe}" + "}}" + str(self.body)
        if self.else_body is not None:
            text += "{{else}}" + str(self.else_body)
        return text + "{{end}}"


class IfNode(BranchNode):
    keyword = "if"


class RangeNode(BranchNode):
    keyword = "range"


class WithNode(BranchNode):
    keyword = "with"


@dataclass(eq=False)
class TemplateNode(Node):
    """`{{template "name" pipe}}`: run another named template with pipe's value as dot."""

    line: int
    name: str
    pipe: PipeNode | None

    def children(self) -> list[Node]:
        return [self.pipe] if self.pipe is not None else []

    def __str__(self) -> str:
        from ollamapy.template.gofmt import go_quote

        if self.pipe is None:
            return "{{template " + go_quote(self.name) + "}}"
        return "{{template " + go_quote(self.name) + f" {self.pipe}" + "}}"


@dataclass(eq=False)
class BreakNode(Node):
    line: int

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(eq=False)
class ContinueNode(Node):
    line: int

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(eq=False)
class EndNode(Node):
    """Parser-internal marker for `{{end}}`; never left in a finished tree."""

    def __str__(self) -> str:
        return "{{end}}"


@dataclass(eq=False)
class ElseNode(Node):
    """Parser-internal marker for `{{else}}`; never left in a finished tree."""

    line: int

    def __str__(self) -> str:
        return "{{else}}"


def walk(node: Node) -> list[Node]:
    """Every node under (and including) `node`, depth first."""
    out: list[Node] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current.children()))
    return out

"""`Template`: the public face of the Go template engine."""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ollamapy.template import nodes as n
from ollamapy.template.errors import TemplateExecError, TemplateSyntaxError
from ollamapy.template.exec import Executor, Source
from ollamapy.template.funcs import NAMES
from ollamapy.template.parse import Parser


@dataclass(frozen=True)
class Template:
    """A parsed Go `text/template`, ready to execute over Python data.

    >>> Template.parse("Hi {{ .Name }}!").execute({"Name": "Ada"})
    'Hi Ada!'
    """

    name: str
    text: str
    trees: Mapping[str, n.ListNode]

    @classmethod
    def parse(cls, text: str, name: str = "") -> Template:
        """Parse `text`; raises TemplateSyntaxError (a TemplateError) with Go's message."""
        try:
            trees = Parser(name, text, NAMES).parse()
        except RecursionError:  # a shape MAX_DEPTH does not bound (a long else-if chain)
            raise TemplateSyntaxError(name, 1, "max expression depth exceeded") from None
        return cls(name, text, trees)

    @property
    def root(self) -> n.ListNode:
        return self.trees[self.name]

    def execute(
        self, data: object, *, today: Callable[[], datetime.date] = datetime.date.today
    ) -> str:
        """Render with `data` as dot; raises TemplateExecError (a TemplateError) on failure.

        `today` feeds `currentDate`/`yesterdayDate`, injectable so output can be pinned.
        """
        executor = Executor(Source(self.name, self.text), self.trees, today)
        try:
            return executor.run(self.name, data)
        except RecursionError:  # templates calling templates, each nested deeply
            raise TemplateExecError(
                self.name, 1, 0, self.name, "", "exceeded maximum template depth"
            ) from None

    def identifiers(self) -> frozenset[str]:
        """Every field name the template mentions anywhere (`.A.B`, `$x.A`, `(f).A`)."""
        return self._identifiers

    @functools.cached_property
    def _identifiers(self) -> frozenset[str]:
        """Walked once per template: every request asks `uses` several times."""
        names: set[str] = set()
        for tree in self.trees.values():
            for node in n.walk(tree):
                names.update(_field_names(node))
        return frozenset(names)

    @functools.cached_property
    def _lowered_identifiers(self) -> frozenset[str]:
        return frozenset(name.lower() for name in self._identifiers)

    def uses(self, field_name: str) -> bool:
        """Whether the template mentions `field_name`, compared case-insensitively.

        This is how Ollama decides whether a template understands `.Messages` (or `.Tools`,
        `.Suffix`, ...): it collects every identifier and lower-cases them.
        """
        return field_name.lower() in self._lowered_identifiers


def _field_names(node: n.Node) -> list[str]:
    if isinstance(node, n.FieldNode):
        return list(node.idents)
    if isinstance(node, n.VariableNode):
        return list(node.idents[1:])
    if isinstance(node, n.ChainNode):
        return list(node.fields)
    return []

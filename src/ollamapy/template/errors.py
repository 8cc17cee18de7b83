"""Template errors that remember where they happened.

Both subclass the project's `TemplateError` (HTTP 400), so handlers need not know about them;
the extra attributes are for callers (and tests) that want the position without parsing text.
"""

from __future__ import annotations

from ollamapy.errors import TemplateError


class TemplateSyntaxError(TemplateError):
    """Parse failure: `template: NAME:LINE: message`, exactly as Go's parser words it."""

    def __init__(self, name: str, line: int, message: str) -> None:
        super().__init__(f"template: {name}:{line}: {message}")
        self.name = name
        self.line = line
        self.reason = message


class TemplateExecError(TemplateError):
    """Execution failure: `template: NAME:LINE:COL: executing "NAME" at <node>: message`."""

    def __init__(
        self, name: str, line: int, column: int, executing: str, context: str, message: str
    ) -> None:
        location = f"{name}:{line}:{column}"
        super().__init__(f'template: {location}: executing "{executing}" at <{context}>: {message}')
        self.name = name
        self.line = line
        self.column = column
        self.reason = message

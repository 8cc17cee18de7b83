"""Go `text/template`, reimplemented in pure Python for Ollama's prompt templates.

`Template.parse(text, name)` then `template.execute(data)`; errors are `TemplateError`s worded
as Go words them. See `exec` for how Python values map onto Go's data model.
"""

from ollamapy.template.errors import TemplateExecError, TemplateSyntaxError
from ollamapy.template.funcs import MISSING
from ollamapy.template.gofmt import GoStringer
from ollamapy.template.gojson import GoJSONMarshaler, OrderedObject, marshal
from ollamapy.template.template import Template

__all__ = [
    "MISSING",
    "GoJSONMarshaler",
    "GoStringer",
    "OrderedObject",
    "Template",
    "TemplateExecError",
    "TemplateSyntaxError",
    "marshal",
]

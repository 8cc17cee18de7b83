"""ollamapy: Ollama, rebuilt in Python.

Importing the package has no side effects; the server, CLI and runner live in subpackages.
"""

__version__ = "0.1.0"
"""This package's own version (`ollamapy_version` in `/api/version`)."""

OLLAMA_VERSION = "0.14.0"
"""The Ollama release whose API this server implements, answered as `version` by
`/api/version` (and printed by `ollama -v`), because clients gate features on it.

0.14.0 is the release Ollama's current documentation names (the Modelfile's `REQUIRES`
example), and the first with every API this project serves or is building: tools (0.3),
structured outputs (0.5), thinking (0.9), logprobs (0.12.11) and the Anthropic Messages API
(0.14). Raise it only when the API matches a later release.
"""

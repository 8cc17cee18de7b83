"""ollamapy: Ollama, rebuilt in Python.

Importing the package has no side effects; the server, CLI and runner live in subpackages.
"""

__version__ = "0.1.0"

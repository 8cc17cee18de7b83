"""The `ollama` command line: click commands, the `ollama run` REPL and rich progress.

The CLI talks to the server only over HTTP, through `ollamapy.api.client.Client`.
"""

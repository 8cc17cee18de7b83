"""The HTTP server: Starlette routes speaking Ollama's wire format."""

"""Ollama's native API: wire models (`api.types`) and the HTTP client the CLI uses (`api.client`).

Nothing is imported here, so the server can use the wire models without loading httpx's client
side, and the CLI can use the client without loading pydantic models it does not need.
"""

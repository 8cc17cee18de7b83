"""Benchmark suite: ollamapy vs the llama.cpp it is built on (`python -m bench`)."""

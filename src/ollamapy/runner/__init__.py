"""Code that runs inside a model process: `python -m ollamapy.runner --model PATH ...`.

`protocol` is the pure wire contract shared with `ollamapy.llm`; `engine`, `native` and
`server` need llama.cpp and are only imported inside the runner process.
"""

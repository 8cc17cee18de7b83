"""Atheris target: the Modelfile parser (`modelfile.parse`, `modelfile.parser.decode`).

Only `ModelfileError` may come out of it. See `harness.py` for how to run.
"""

from __future__ import annotations

from collections.abc import Iterable

from ollamapy.errors import ModelfileError

MODULE = "ollamapy.modelfile"


def target(data: bytes) -> None:
    from ollamapy.modelfile import parser

    try:
        modelfile = parser.parse(parser.decode(data))
    except ModelfileError:
        return
    modelfile.show("fuzz")  # what `ollama show --modelfile` writes from a parsed one


def seeds() -> Iterable[bytes]:
    yield b'FROM llama3.2\nPARAMETER stop "<|eot_id|>"\nPARAMETER temperature 0.7\n'
    yield b'FROM ./m.gguf\nTEMPLATE """{{ .Prompt }}"""\nSYSTEM You are a cat.\n'
    yield b"FROM x\nMESSAGE user hi\nMESSAGE assistant 'hello'\nADAPTER ./a.gguf\nLICENSE MIT\n"
    yield b"# comment\nfrom x\nparameter num_ctx 4096\nREQUIRES 0.5.0\n"


if __name__ == "__main__":
    from harness import main

    main(MODULE, target, seeds)

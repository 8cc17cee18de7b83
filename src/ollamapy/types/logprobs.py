"""Log probabilities of generated tokens: one value type from the runner to the encoders.

The runner computes them (the model's log-softmax over its whole vocabulary, before any
sampler, as Ollama does), sends them on its NDJSON lines, and each API layer writes them in
its own shape (Ollama's `logprobs` list, OpenAI's `choices[].logprobs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ollamapy.errors import BadRequestError

MAX_TOP_LOGPROBS = 20
"""The most alternatives a request may ask for per position (Ollama's limit)."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One token's text, raw bytes and log probability; `top_logprobs` are the most
    likely tokens at its position, most likely first (empty unless asked for)."""

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top_logprobs: tuple[TokenLogprob, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Ollama's `api.Logprob` object: `bytes` and `top_logprobs` left out when empty."""
        out: dict[str, Any] = {"token": self.token, "logprob": self.logprob}
        if self.bytes:
            out["bytes"] = list(self.bytes)
        if self.top_logprobs:
            out["top_logprobs"] = [top.to_json() for top in self.top_logprobs]
        return out

    @classmethod
    def from_json(cls, raw: object) -> TokenLogprob:
        """Read one object written by `to_json`; ValueError names what is wrong."""
        if not isinstance(raw, Mapping):
            raise ValueError("a logprob entry must be an object")
        token, logprob = raw.get("token"), raw.get("logprob")
        data, top = raw.get("bytes") or [], raw.get("top_logprobs") or []
        if not isinstance(token, str):
            raise ValueError("a logprob entry needs a string 'token'")
        if isinstance(logprob, bool) or not isinstance(logprob, int | float):
            raise ValueError("a logprob entry needs a numeric 'logprob'")
        if not isinstance(data, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in data
        ):
            raise ValueError("a logprob entry's 'bytes' must be a list of bytes")
        if not isinstance(top, list):
            raise ValueError("a logprob entry's 'top_logprobs' must be a list")
        alternatives = tuple(cls.from_json(item) for item in top)
        return cls(token, float(logprob), tuple(data), alternatives)


def check_top_logprobs(value: int) -> None:
    """Ollama's range for `top_logprobs` (0-20); its 400 otherwise."""
    if not 0 <= value <= MAX_TOP_LOGPROBS:
        raise BadRequestError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")

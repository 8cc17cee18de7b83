"""Value types shared by every layer: model names, digests, durations and options."""

from ollamapy.types.digest import Digest
from ollamapy.types.duration import FOREVER, parse_duration
from ollamapy.types.names import ModelName
from ollamapy.types.options import (
    OPTION_SPECS,
    RunnerOptions,
    SamplingOptions,
    parse_option_text,
    validate_options,
)

__all__ = [
    "FOREVER",
    "OPTION_SPECS",
    "Digest",
    "ModelName",
    "RunnerOptions",
    "SamplingOptions",
    "parse_duration",
    "parse_option_text",
    "validate_options",
]

"""Converting Hugging Face Safetensors model directories to GGUF (BERT embedders; Llama,
Qwen2 and Qwen3 decoders)."""

from ollamapy.convert.convert import (
    SUPPORTED_ARCHITECTURES,
    ConversionResult,
    OutType,
    ProgressCallback,
    convert_model,
    detect_architecture,
)

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ConversionResult",
    "OutType",
    "ProgressCallback",
    "convert_model",
    "detect_architecture",
]

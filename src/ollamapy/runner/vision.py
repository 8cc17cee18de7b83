"""Images in a runner: llama.cpp's multimodal library (`mtmd`) behind a small Python face.

A model with a projector (`--mmproj`) gets a `Vision`. For a completion with images it:

1. decodes each image once per distinct content (`sha256` of its bytes) with mtmd's own
   loader (stb_image: PNG, JPEG, GIF's first frame) or, for WebP, Pillow; the header was
   checked first (`types.images.probe_image`: a non-image, an SVG, a truncated file or a
   decompression bomb is a 400 and never reaches a decoder);
2. lets mtmd lay the prompt out (`mtmd_tokenize`): the server's `[img-N]` tags become
   mtmd's marker, and mtmd adds the model's own image delimiters (Gemma 3's
   `<start_of_image>`, SmolVLM's tile rows, ...) and splits the text into token runs;
3. encodes each image chunk through the projector, once: encodings are cached by image
   hash (LRU), so turn N+1 of a chat about the same picture encodes nothing.

The prompt the engine sees is one list of ints: text tokens as they are, and each image
chunk as a run of negative *image positions*, unique to that image (see `image_token`).
Prefix reuse therefore compares image identity for free: two prompts share a prefix only
where they hold the same text AND the same images. The engine evaluates a run through
`ImageChunk.decode` (mtmd's helper, which turns on non-causal attention where the model
wants it, e.g. Gemma 3), always whole: a prefix never ends inside an image (`image_start`).
"""

from __future__ import annotations

import base64
import collections
import ctypes
import hashlib
import io
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp as lc
import numpy as np
from llama_cpp import mtmd_cpp as mtmd

from ollamapy.errors import BadRequestError
from ollamapy.runner.native import NATIVE_LOG, Context, Model, NativeError
from ollamapy.types.images import NATIVE_FORMATS, probe_image

IMAGE_TAG = re.compile(r"\[img-(\d+)\]")
"""How the server's rendered prompt places image N (Ollama's tag)."""

_SPAN = 1 << 20
"""Positions reserved per image chunk in the negative id space (no chunk is this long)."""

CACHE_SIZE = 32
"""Encoded image chunks kept for reuse (each is n_tokens x n_embd floats: 2.6 MB for
Gemma 3 4B's 256 x 2560)."""

BITMAP_CACHE_SIZE = 4
"""Decoded images kept (RGB at full size: a 12-megapixel photo is 36 MB), so the next turn
of a chat does not decode its picture again."""


def image_token(chunk_id: int, offset: int) -> int:
    """The id the engine sees for position `offset` of image chunk `chunk_id` (< 0)."""
    return -(chunk_id * _SPAN + offset + 1)


def is_image(token: int) -> bool:
    return token < 0


def chunk_of(token: int) -> tuple[int, int]:
    """(chunk id, offset in the chunk) of an image position."""
    return divmod(-token - 1, _SPAN)


def image_start(tokens: Sequence[int], n: int) -> int:
    """`n` moved back to the start of the image it falls inside (unchanged between
    text tokens or at an image's first position): a cached prefix may cover whole images
    only, since an image is evaluated in one piece."""
    if 0 <= n < len(tokens) and is_image(tokens[n]):
        return n - chunk_of(tokens[n])[1]
    return n


class ImageChunk:
    """One encoded image chunk: its embeddings and mtmd's description of it (needed to
    place them). Shared by every prompt that holds the image; freed when none does."""

    def __init__(self, chunk_id: int, chunk: Any, embd: np.ndarray[Any, Any], vision: Vision):
        self.id = chunk_id
        self.n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        self.non_causal = bool(mtmd.mtmd_decode_use_non_causal(vision.ptr, chunk))
        """Evaluated with bidirectional attention, so in one batch (Gemma 3)."""
        self._chunk = chunk
        self._embd = embd
        self._vision = vision
        weakref.finalize(self, mtmd.mtmd_input_chunk_free, chunk)

    def decode(self, ctx: Context, seq: int, pos: int, n_batch: int) -> None:
        """Evaluate the embeddings at positions `pos`.. of sequence `seq` (engine thread)."""
        new_pos = lc.llama_pos(0)
        ptr = self._embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self._vision.ptr,
            ctx.ptr,
            self._chunk,
            ptr,
            pos,
            seq,
            n_batch,
            ctypes.byref(new_pos),
            mtmd.mtmd_helper_post_decode_callback(0),
            None,
        )
        if rc != 0:
            raise NativeError(f"evaluating an image failed ({rc})")


@dataclass(frozen=True, slots=True)
class ImagePrompt:
    """A prompt laid out by mtmd: tokens (image positions negative) and its chunks."""

    tokens: list[int]
    images: dict[int, ImageChunk]


class Vision:
    """The projector of one model (an mtmd context) and its caches."""

    def __init__(self, path: str, model: Model, *, n_threads: int, use_gpu: bool) -> None:
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.warmup = False
        NATIVE_LOG.errors = []
        self._ptr = mtmd.mtmd_init_from_file(path.encode(), model.ptr, params)
        if not self._ptr:
            raise NativeError(f"error loading projector {path}: {NATIVE_LOG.reason('unknown')}")
        self._model = model
        self.marker = (mtmd.mtmd_default_marker() or b"<__media__>").decode()
        self.supports_audio = bool(mtmd.mtmd_support_audio(self._ptr))
        if mtmd.mtmd_decode_use_mrope(self._ptr):
            mtmd.mtmd_free(self._ptr)
            self._ptr = None
            raise NativeError("projectors with M-RoPE positions (Qwen-VL) are not supported yet")
        self._lock = threading.Lock()
        self._ids: dict[bytes, int] = {}
        self._encoded: collections.OrderedDict[int, ImageChunk] = collections.OrderedDict()
        self._bitmaps: collections.OrderedDict[bytes, Any] = collections.OrderedDict()

    @property
    def ptr(self) -> Any:
        return self._ptr

    def close(self) -> None:
        with self._lock:
            for bitmap in self._bitmaps.values():
                mtmd.mtmd_bitmap_free(bitmap)
            self._bitmaps.clear()
            self._encoded.clear()
            if self._ptr:
                mtmd.mtmd_free(self._ptr)
                self._ptr = None

    # ------------------------------------------------------------------ prompts

    def prompt(self, text: str, images: Sequence[str]) -> ImagePrompt:
        """Lay `text` out with its `[img-N]` images (base64) and encode what is not cached.

        Runs in one worker thread at a time (mtmd's context is not shared across threads);
        bad images are 400s."""
        raw = [_b64(image) for image in images]
        digests = [hashlib.sha256(data).digest() for data in raw]
        order: list[int] = []

        def tag(match: re.Match[str]) -> str:
            index = int(match.group(1))
            if index >= len(raw):
                raise BadRequestError(f"invalid image index: {index}")
            order.append(index)
            return self.marker

        marked = IMAGE_TAG.sub(tag, text)
        with self._lock:
            bitmaps = [self._bitmap(digests[i], raw[i]) for i in order]
            return self._layout(marked, bitmaps)

    def _bitmap(self, digest: bytes, data: bytes) -> Any:
        cached = self._bitmaps.get(digest)
        if cached is not None:
            self._bitmaps.move_to_end(digest)
            return cached
        info = probe_image(data)
        if info.format in NATIVE_FORMATS:
            buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            bitmap = mtmd.mtmd_helper_bitmap_init_from_buf(self._ptr, buf, len(data), False)
        else:
            bitmap = _pillow_bitmap(data)
        if not bitmap:
            raise BadRequestError("invalid image data: the image could not be decoded")
        mtmd.mtmd_bitmap_set_id(bitmap, digest.hex().encode())
        self._bitmaps[digest] = bitmap
        while len(self._bitmaps) > BITMAP_CACHE_SIZE:
            mtmd.mtmd_bitmap_free(self._bitmaps.popitem(last=False)[1])
        return bitmap

    def _layout(self, text: str, bitmaps: list[Any]) -> ImagePrompt:
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            data = text.encode()
            piece = mtmd.mtmd_input_text(data, len(data), True, True)
            array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            rc = mtmd.mtmd_tokenize(self._ptr, chunks, ctypes.byref(piece), array, len(bitmaps))
            if rc != 0:
                raise BadRequestError(f"the prompt's images could not be placed ({rc})")
            return self._chunks(chunks)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def _chunks(self, chunks: Any) -> ImagePrompt:
        tokens: list[int] = []
        images: dict[int, ImageChunk] = {}
        seen: collections.Counter[bytes] = collections.Counter()
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(chunk)
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                tokens.extend(ptr[j] for j in range(n.value))
                continue
            if kind != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                raise BadRequestError("only images are supported as media")
            # The chunk's id is its bitmap's: the image's digest (a tiled image has
            # several chunks, told apart by their order).
            digest = bytes.fromhex((mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode())
            key = digest + seen[digest].to_bytes(4, "little")
            seen[digest] += 1
            encoded = self._encode(key, chunk)
            images[encoded.id] = encoded
            tokens.extend(image_token(encoded.id, k) for k in range(encoded.n_tokens))
        return ImagePrompt(tokens, images)

    def _encode(self, key: bytes, chunk: Any) -> ImageChunk:
        chunk_id = self._ids.setdefault(key, len(self._ids) + 1)
        cached = self._encoded.get(chunk_id)
        if cached is not None:
            self._encoded.move_to_end(chunk_id)
            return cached
        if mtmd.mtmd_encode_chunk(self._ptr, chunk) != 0:
            raise NativeError("encoding the image failed")
        n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        n_embd = int(lc.llama_model_n_embd_inp(self._model.ptr))
        out = mtmd.mtmd_get_output_embd(self._ptr)
        embd = np.ctypeslib.as_array(out, shape=(n_tokens * n_embd,)).copy()
        encoded = ImageChunk(chunk_id, mtmd.mtmd_input_chunk_copy(chunk), embd, self)
        self._encoded[chunk_id] = encoded
        while len(self._encoded) > CACHE_SIZE:
            self._encoded.popitem(last=False)
        return encoded

    @property
    def encoded_count(self) -> int:
        """How many image chunks are cached (for tests and /info)."""
        return len(self._encoded)


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise BadRequestError("invalid image data: images must be base64-encoded") from None


def _pillow_bitmap(data: bytes) -> Any:
    """A bitmap for a format mtmd's loader lacks (WebP), decoded by Pillow to RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    pixels = rgb.tobytes()
    buf = (ctypes.c_uint8 * len(pixels)).from_buffer_copy(pixels)
    return mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buf)

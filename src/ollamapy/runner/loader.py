"""Loading a model, its adapters and its context from the runner's command line.

This is where Ollama's load-time options become llama.cpp parameters:
`num_gpu` -1 means every layer when this llama.cpp build can offload (else 0),
`num_thread` 0 means the number of physical cores, `num_ctx` is per parallel sequence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ollamapy.runner.embed import (
    EMBED_MAX_SEQS,
    DecoderEmbedder,
    embedding_context_size,
    is_embedding_model,
)
from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.native import (
    Context,
    LoraAdapter,
    Model,
    physical_cores,
    supports_gpu_offload,
)
from ollamapy.runner.protocol import RunnerInfo
from ollamapy.runner.vision import Vision


@dataclass
class LoadedModel:
    """Owns the model, its LoRA adapters and the context; `close()` frees all of them.

    A generative model also gets `embedder`, whose own context is made on the first
    embedding request.
    """

    args: LaunchArgs
    model: Model
    context: Context
    adapters: list[LoraAdapter] = field(default_factory=list)
    n_gpu_layers: int = 0
    embedder: DecoderEmbedder | None = None
    vision: Vision | None = None
    """The projector, when the model was launched with one (`--mmproj`)."""

    def info(self) -> RunnerInfo:
        m = self.model
        return RunnerInfo(
            n_ctx=self.context.n_ctx_seq,
            n_ctx_train=m.n_ctx_train,
            n_parallel=self.context.n_seq_max,
            n_vocab=m.n_vocab,
            n_embd=m.n_embd,
            add_bos=m.add_bos,
            description=m.description,
            size=m.size,
            n_params=m.n_params,
            has_encoder=m.has_encoder,
            embeddings=self.args.embedding,
            gpu_offload=supports_gpu_offload(),
            n_gpu_layers=self.n_gpu_layers,
        )

    def close(self) -> None:
        if self.vision is not None:
            self.vision.close()
        if self.embedder is not None:
            self.embedder.close()
        self.context.close()
        for adapter in self.adapters:
            adapter.close()
        self.model.close()


def gpu_layers(requested: int) -> int:
    """-1 (Ollama's "auto") offloads everything on a GPU build and nothing on CPU."""
    if not supports_gpu_offload():
        return 0
    return -1 if requested < 0 else requested


def thread_count(requested: int) -> int:
    return requested if requested > 0 else physical_cores()


def load(args: LaunchArgs, progress: Callable[[float], None] | None = None) -> LoadedModel:
    """Load everything `args` names; on any failure free what was made and re-raise."""
    if args.parallel < 1 or args.num_ctx < 1 or args.num_batch < 1:
        raise ValueError("parallel, ctx-size and batch-size must be positive")
    n_gpu = gpu_layers(args.num_gpu)
    model = Model(
        args.model,
        n_gpu_layers=n_gpu,
        main_gpu=args.main_gpu,
        use_mmap=args.use_mmap,
        use_mlock=args.use_mlock,
        progress=progress,
    )
    adapters: list[LoraAdapter] = []
    try:
        n_ctx_seq, n_batch, n_seq = args.num_ctx, args.num_batch, args.parallel
        if is_embedding_model(model):
            args = dataclasses.replace(args, embedding=True)
            n_ctx_seq, n_batch = embedding_context_size(model, n_ctx_seq, n_batch)
            n_seq = max(n_seq, EMBED_MAX_SEQS)
        adapters.extend(LoraAdapter(model, path) for path in args.lora)
        context = Context(
            model,
            n_ctx_seq=n_ctx_seq,
            n_seq_max=n_seq,
            n_batch=n_batch,
            n_threads=thread_count(args.num_thread),
            flash_attention=args.flash_attention,
            kv_cache_type=args.kv_cache_type,
            embeddings=args.embedding,
        )
        try:
            context.set_adapters(adapters)
        except BaseException:
            context.close()
            raise
    except BaseException:
        for adapter in adapters:
            adapter.close()
        model.close()
        raise
    vision = None
    if args.mmproj:
        try:
            vision = Vision(
                args.mmproj, model, n_threads=thread_count(args.num_thread), use_gpu=n_gpu != 0
            )
        except BaseException:
            context.close()
            for adapter in adapters:
                adapter.close()
            model.close()
            raise
    embedder = None
    if not args.embedding:
        embedder = DecoderEmbedder(
            model,
            num_ctx=args.num_ctx,
            n_threads=thread_count(args.num_thread),
            flash_attention=args.flash_attention,
            kv_cache_type=args.kv_cache_type,
        )
    return LoadedModel(args, model, context, adapters, n_gpu, embedder, vision)

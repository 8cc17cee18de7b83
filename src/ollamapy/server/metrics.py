"""Prometheus metrics (`GET /metrics`) and one structured log line per request.

Three sources feed them, none of which knows Prometheus:

- `RequestObserver`, an ASGI middleware around the whole app, opens a `RequestRecord` per
  request (its id, method and route template), puts it in a context variable, and when the
  response has been sent counts it and writes its log line.
- The completion path fills the record in as it learns things (`note_model` once the model
  is resolved, `note_first_token`, `note_final` with the token counts), through that
  context variable, so route modules (native, `/v1`, and any later dialect) need no code
  of their own: whatever runs `completion.prepare` and `completion.complete` is counted.
- The scheduler reports grants, runner starts, failures, crashes and stops through its
  `SchedulerObserver` protocol; queue depths and loaded models are read from it at scrape.

Each app has its own `CollectorRegistry` (never the process-global one), so tests that
build many apps do not collide. Labels are bounded: the route is the matched route's
template (never the raw path), the model is a resolved installed model's name (an unknown
name a client sends is never a label). Prompts, bodies and headers other than the
request id are never logged.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ollamapy.chat.events import Final
from ollamapy.scheduler import ModelLoad, Scheduler, StopReason

log = logging.getLogger("ollamapy.server.requests")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CLIENT_CLOSED = 499
"""The status counted for a request whose client left before any response was sent."""
QUIET_ROUTES = frozenset({"/metrics"})
"""Routes whose request lines are logged at DEBUG only (a scraper polls them all day)."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
RATE_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 350, 500, 1000)


# ----------------------------------------------------------------------------- the record


@dataclass
class RequestRecord:
    """What one request did, filled in along its path; read once it has been answered."""

    request_id: str
    method: str
    route: str
    started: float
    model: str = ""
    status: int = 0
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    generated_tokens: int | None = None
    generation_s: float | None = None
    first_token_s: float | None = None
    queue_s: float | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


_current: ContextVar[RequestRecord | None] = ContextVar("ollamapy_request", default=None)


def current_record() -> RequestRecord | None:
    """The record of the request this code runs for (None outside a request)."""
    return _current.get()


def note_model(name: str) -> None:
    """The request runs on this (resolved, installed) model."""
    record = _current.get()
    if record is not None:
        record.model = name


def note_first_token() -> None:
    """The first generated text is about to reach the encoder (time to first token)."""
    record = _current.get()
    if record is not None and record.first_token_s is None:
        record.first_token_s = record.elapsed()


def note_prompt_tokens(count: int) -> None:
    """Tokens read by a request that generates none (an embedding)."""
    record = _current.get()
    if record is not None:
        record.prompt_tokens = (record.prompt_tokens or 0) + count


def note_final(final: Final) -> None:
    """A completion ended: its token counts and generation time."""
    record = _current.get()
    if record is None:
        return
    record.prompt_tokens = (record.prompt_tokens or 0) + final.prompt_eval_count
    record.cached_tokens = (record.cached_tokens or 0) + final.prompt_cached_count
    record.generated_tokens = (record.generated_tokens or 0) + final.eval_count
    record.generation_s = (record.generation_s or 0.0) + final.eval_duration / 1e9


# ----------------------------------------------------------------------------- Prometheus


class Metrics:
    """One app's Prometheus metrics, in a registry of its own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "ollama_requests",
            "HTTP requests answered, by route template, method, model and status.",
            ["route", "method", "model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "ollama_request_duration_seconds",
            "Time from a request's arrival to the last byte of its answer.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "ollama_time_to_first_token_seconds",
            "Time from a request's arrival to its first generated text.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "ollama_prompt_tokens",
            "Prompt tokens read, cached ones included.",
            ["model"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "ollama_generated_tokens", "Tokens generated.", ["model"], registry=r
        )
        self.cached_tokens = Counter(
            "ollama_prompt_cached_tokens",
            "Prompt tokens served from the runner's prompt cache instead of evaluated.",
            ["model"],
            registry=r,
        )
        self.cache_hits = Counter(
            "ollama_prompt_cache_hits",
            "Completions whose prompt reused at least one cached token.",
            ["model"],
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "ollama_tokens_per_second",
            "Generation speed of each completion (generated tokens / generation time).",
            ["model"],
            buckets=RATE_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "ollama_queue_wait_seconds",
            "Time a request waited for its runner (a load it waited for included).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.runner_starts = Counter(
            "ollama_runner_starts", "Runners that finished loading.", ["model"], registry=r
        )
        self.load_seconds = Histogram(
            "ollama_runner_load_seconds",
            "Time a runner took to load its model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.load_failures = Counter(
            "ollama_runner_load_failures", "Runners that failed to start.", ["model"], registry=r
        )
        self.crashes = Counter(
            "ollama_runner_crashes",
            "Loaded runners whose process exited without being asked to.",
            ["model"],
            registry=r,
        )
        self.evictions = Counter(
            "ollama_runner_evictions",
            "Idle runners unloaded to make room for another model.",
            ["model"],
            registry=r,
        )
        self.stops = Counter(
            "ollama_runner_stops",
            "Runners stopped, by reason (expired, evicted, reload, unload, shutdown).",
            ["model", "reason"],
            registry=r,
        )

    def watch(self, scheduler: Scheduler[Any]) -> None:
        """Hear the scheduler's events, and read its queues and loaded models at scrape."""
        scheduler.observe(SchedulerMetrics(self))
        self.registry.register(SchedulerCollector(scheduler))

    def count(self, record: RequestRecord, duration: float) -> None:
        """Count one answered request."""
        model = record.model
        self.requests.labels(record.route, record.method, model, str(record.status)).inc()
        self.latency.labels(record.route, model).observe(duration)
        if record.first_token_s is not None:
            self.first_token.labels(model).observe(record.first_token_s)
        if record.prompt_tokens:
            self.prompt_tokens.labels(model).inc(record.prompt_tokens)
        if record.generated_tokens:
            self.generated_tokens.labels(model).inc(record.generated_tokens)
            if record.generation_s:
                rate = record.generated_tokens / record.generation_s
                self.tokens_per_second.labels(model).observe(rate)
        if record.cached_tokens:
            self.cached_tokens.labels(model).inc(record.cached_tokens)
            self.cache_hits.labels(model).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)


class SchedulerMetrics:
    """The `SchedulerObserver` that counts the scheduler's events."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def request_granted(self, load: ModelLoad, waited: float) -> None:
        self.metrics.queue_wait.labels(load.name).observe(waited)
        record = _current.get()  # the scheduler runs in the waiting request's task
        if record is not None:
            record.queue_s = (record.queue_s or 0.0) + waited

    def runner_started(self, load: ModelLoad, seconds: float) -> None:
        self.metrics.runner_starts.labels(load.name).inc()
        self.metrics.load_seconds.labels(load.name).observe(seconds)

    def runner_failed(self, load: ModelLoad) -> None:
        self.metrics.load_failures.labels(load.name).inc()

    def runner_crashed(self, load: ModelLoad) -> None:
        self.metrics.crashes.labels(load.name).inc()

    def runner_stopped(self, load: ModelLoad, reason: StopReason) -> None:
        self.metrics.stops.labels(load.name, reason).inc()
        if reason == "evicted":
            self.metrics.evictions.labels(load.name).inc()


class SchedulerCollector(Collector):
    """Gauges read from the scheduler when scraped (on the event loop, like the scheduler)."""

    def __init__(self, scheduler: Scheduler[Any]) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        loaded = self.scheduler.loaded()
        starting = self.scheduler.starting_models()
        count = GaugeMetricFamily("ollama_loaded_models", "Runners loaded (or being stopped).")
        count.add_metric([], len(loaded))
        memory = GaugeMetricFamily(
            "ollama_model_memory_bytes",
            "Memory a loaded model holds: planned total, and the part in GPU memory.",
            labels=["model", "kind"],
        )
        active = GaugeMetricFamily(
            "ollama_model_active_requests", "Requests a runner is serving now.", labels=["model"]
        )
        queue = GaugeMetricFamily(
            "ollama_queue_depth", "Requests waiting for a runner, by model.", labels=["model"]
        )
        progress = GaugeMetricFamily(
            "ollama_model_load_progress",
            "How far a starting runner has loaded (0-1).",
            labels=["model"],
        )
        for entry in loaded:
            name = entry.load.name
            memory.add_metric([name, "total"], entry.memory.total or entry.load.size)
            memory.add_metric([name, "vram"], entry.size_vram)
            active.add_metric([name], entry.active)
            queue.add_metric([name], self.scheduler.queue_length(entry.load.key))
        for model in starting:
            progress.add_metric([model.load.name], model.progress)
            queue.add_metric([model.load.name], model.waiting)
        pending = GaugeMetricFamily(
            "ollama_requests_pending", "Requests waiting for a runner, all models together."
        )
        pending.add_metric([], self.scheduler.pending)
        yield from (count, memory, active, queue, progress, pending)


async def metrics_route(request: Request) -> Response:
    """Prometheus's text exposition of this server's metrics."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


ROUTES = [Route("/metrics", metrics_route, methods=["GET"])]


# ----------------------------------------------------------------------------- middleware


class RequestObserver:
    """ASGI middleware: a `RequestRecord` per HTTP request, counted and logged at its end,
    and its id sent back in `X-Request-ID` (a client's own id is kept when it is a short
    plain token, so a caller can follow its request through the log)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(
            request_id=request_id(scope),
            method=scope["method"],
            route=route_template(scope["app"].routes if "app" in scope else [], scope),
            started=time.perf_counter(),
        )
        id_header = (REQUEST_ID_HEADER.encode(), record.request_id.encode())
        finished = False

        async def send_with_id(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                # counted before the last byte leaves: a client that has its whole answer
                # (a test, a scraper right after) finds the request already counted
                finished = True
                self._finish(record)
            await send(message)

        token = _current.set(record)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            record.status = record.status or 500
            raise
        finally:
            _current.reset(token)
            if not finished:
                self._finish(record)

    def _finish(self, record: RequestRecord) -> None:
        duration = record.elapsed()
        record.status = record.status or CLIENT_CLOSED
        try:
            self.metrics.count(record, duration)
        except Exception:  # metrics must never fail a request
            log.exception("counting a request failed")
        level = logging.DEBUG if record.route in QUIET_ROUTES else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "request %s", log_fields(record, duration))


def request_id(scope: Scope) -> str:
    """The client's `X-Request-ID` if it is a short plain token, else a fresh one."""
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text: str = value.decode("latin-1")
            if _SAFE_REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex[:16]


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route that serves this request (`/api/blobs/{digest}`, never a
    raw path, so labels stay few); a route that matches the path but not the method counts
    too (its 405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "?"))
        if match is Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", "?"))
    return partial or "unmatched"


def log_fields(record: RequestRecord, duration: float) -> str:
    """The record as logfmt `key=value` pairs (values quoted when they need it)."""
    fields: list[tuple[str, object]] = [
        ("id", record.request_id),
        ("method", record.method),
        ("route", record.route),
        ("model", record.model or None),
        ("status", record.status),
        ("prompt_tokens", record.prompt_tokens),
        ("cached_tokens", record.cached_tokens),
        ("generated_tokens", record.generated_tokens),
        ("queue_ms", _ms(record.queue_s)),
        ("ttft_ms", _ms(record.first_token_s)),
        ("duration_ms", _ms(duration)),
    ]
    return " ".join(f"{key}={_logfmt(value)}" for key, value in fields if value is not None)


def _ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{seconds * 1000:.1f}"


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\') and text.isprintable():
        return text
    quoted: str = json.dumps(text)
    return quoted

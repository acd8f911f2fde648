"""Prometheus metrics of a `forge serve` replica, gathered over its processes (HTTP servers and model workers)
with prometheus_client's multiprocess mode, and served at /metrics.

HTTP side: requests by endpoint and status, request latency, requests refused for size. Workers: tokens
generated and read, batch sizes, GPU memory. At scrape time: the queue depth (jobs waiting for a worker) and
the pending generations (queued or running), the figures to scale replicas on.

`forge.serve.server` names a fresh folder in PROMETHEUS_MULTIPROC_DIR before this module (and so
prometheus_client) is first imported; the forked HTTP servers and spawned workers inherit it.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from functools import cache
from typing import Any

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)
from prometheus_client.core import GaugeMetricFamily

from forge.serve.protocol import error_body

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
ENV = "PROMETHEUS_MULTIPROC_DIR"


@cache
def http_metrics() -> dict[str, Any]:
    """The HTTP process's metrics (created once per process)."""
    return {
        "requests": Counter("forge_requests_total", "HTTP requests answered, by endpoint and status code.",
                            ["endpoint", "status"]),
        "latency": Histogram("forge_request_duration_seconds", "Time from request to the end of its response "
                             "(a stream's last event), by endpoint.", ["endpoint"], buckets=LATENCY_BUCKETS),
    }


@cache
def worker_metrics() -> dict[str, Any]:
    """A model worker's metrics (created once per process)."""
    return {
        "generated": Counter("forge_generated_tokens_total", "Tokens generated."),
        "prompt": Counter("forge_prompt_tokens_total", "Prompt tokens read."),
        "generations": Counter("forge_generations_total", "Generations finished, by finish reason.", ["reason"]),
        "batch": Histogram("forge_batch_size", "Generations run together in one dynamic batch.",
                           buckets=BATCH_BUCKETS),
        "allocated": Gauge("forge_gpu_memory_allocated_bytes", "GPU memory held by tensors, summed over the "
                           "workers of a device.", ["device"], multiprocess_mode="livesum"),
        "reserved": Gauge("forge_gpu_memory_reserved_bytes", "GPU memory reserved by PyTorch's allocator, summed "
                          "over the workers of a device.", ["device"], multiprocess_mode="livesum"),
    }


def record_items(items: Iterable[dict[str, Any] | None]) -> None:
    """Count the generations that finished in a step of a batch."""
    metrics = worker_metrics()
    for item in items:
        if item and item.get("finish_reason"):
            metrics["generated"].inc(item["completion_tokens"])
            metrics["prompt"].inc(item["prompt_tokens"])
            metrics["generations"].labels(item["finish_reason"]).inc()


def record_gpu_memory(device: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    metrics = worker_metrics()
    metrics["allocated"].labels(device).set(torch.cuda.memory_allocated(device))
    metrics["reserved"].labels(device).set(torch.cuda.memory_reserved(device))


class LiveFigures:
    """A collector of the figures read at scrape time: queue depth and pending generations."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def collect(self) -> Iterable[GaugeMetricFamily]:
        queue = getattr(self.spec, "request_queue", None)
        try:
            depth = queue.qsize() if queue is not None else 0
        except (OSError, EOFError, NotImplementedError):  # the queue's manager is shutting down
            depth = 0
        yield GaugeMetricFamily("forge_queue_depth", "Generations waiting for a model worker.", value=depth)
        pending = getattr(self.spec, "pending", None)
        yield GaugeMetricFamily("forge_requests_pending", "Generations queued or running (refused with 429 over "
                                "serving.max_pending_requests).", value=pending.value if pending is not None else 0)


def metrics_text(spec: Any) -> tuple[bytes, str]:
    """The /metrics page: every process's metrics, plus the live figures."""
    registry = CollectorRegistry()
    if os.environ.get(ENV):
        multiprocess.MultiProcessCollector(registry)
        registry.register(LiveFigures(spec))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    registry.register(LiveFigures(spec))
    return generate_latest(REGISTRY) + generate_latest(registry), CONTENT_TYPE_LATEST


class RequestGuard:
    """ASGI middleware: refuses a body over the size limit by its Content-Length (413, before reading it) and
    a POST to json_paths that is not JSON (415), counts every request and its latency by endpoint (unknown
    paths count as "other"), and echoes a client's X-Request-ID header on the answer (to match answers to
    requests when tracing)."""

    def __init__(self, app: Any, max_bytes: int, endpoints: Iterable[str], json_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.endpoints = frozenset(endpoints)
        self.json_paths = frozenset(json_paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        started = time.perf_counter()
        status = {"code": 500}

        headers = dict(scope.get("headers") or [])
        request_id = _request_id(headers)

        async def counted_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                if request_id is not None:
                    message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id)]}
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                _observe(endpoint, status["code"], started)

        length = headers.get(b"content-length")
        refusal = None
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            refusal = 413, f"the request body has {int(length)} bytes, over the limit of {self.max_bytes} " \
                           "(serving.max_request_bytes)", "request_too_large"
        elif scope["method"] == "POST" and scope["path"] in self.json_paths and not _is_json(headers):
            refusal = 415, "the request body must be JSON: send it with Content-Type: application/json", \
                "unsupported_media_type"
        if refusal is not None:
            await _send_json(send, refusal[0], error_body(*refusal), request_id)
            _observe(endpoint, refusal[0], started)
            return
        try:
            await self.app(scope, receive, counted_send)
        except Exception:
            _observe(endpoint, 500, started)
            raise


def _request_id(headers: dict[bytes, bytes]) -> bytes | None:
    """The client's X-Request-ID when it is short printable ASCII (anything else is not echoed)."""
    value = headers.get(b"x-request-id")
    if value and len(value) <= 128 and all(33 <= c < 127 for c in value):
        return value
    return None


def _is_json(headers: dict[bytes, bytes]) -> bool:
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind == b"application/json" or kind.endswith(b"+json")


def _observe(endpoint: str, status: int, started: float) -> None:
    metrics = http_metrics()
    metrics["requests"].labels(endpoint, str(status)).inc()
    metrics["latency"].labels(endpoint).observe(time.perf_counter() - started)


async def _send_json(send: Any, status: int, body: dict[str, Any], request_id: bytes | None = None) -> None:
    import json

    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status,
                "headers": headers + ([(b"x-request-id", request_id)] if request_id is not None else [])})
    await send({"type": "http.response.body", "body": payload})

"""`forge serve`: check the run and the machine, then assemble and run the LitServer (model workers per
device, dynamic batching, request limits, API key, JSON errors, /health and /metrics).
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from forge.serve.errors import ServeError, ServeFailed
from forge.serve.load import (LITSERVE_HOSTS, ServedModel, check_machine, check_port_free, prepare_served,
                              resolve_target)
from forge.serve.protocol import Limits

API_PATHS = ("/v1/chat/completions", "/v1/models", "/v1/generate", "/v1/summarize", "/v1/analyze", "/v1/batch",
             "/v1/genes")
TAGGER_PATHS = ("/v1/models", "/v1/genes", "/v1/analyze")  # what a token classifier serves
OPEN_PATHS = ("/health", "/metrics", "/info", "/")
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def serve(target: str, overrides: Sequence[str] = (), *, host: str | None = None, port: int | None = None,
          log_level: str = "warning") -> int:
    """Serve a run until stopped (Ctrl-C or SIGTERM: a clean stop, exit 0); bad input raises ServeError."""
    resolved, run_dir = resolve_target(target, overrides)
    settings = resolved.recipe.serving.model_copy(
        update={k: v for k, v in (("host", host), ("port", port)) if v is not None})
    import torch

    check_machine(settings, torch.cuda.is_available())
    digest = _api_key_digest(settings.api_key_env)
    served = prepare_served(resolved, run_dir)
    check_port_free(settings.host, settings.port)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer is used again after the fork
    from transformers import AutoTokenizer

    from forge.model.gguf import pretrained_location

    location, gguf = pretrained_location(served.tokenizer_source)
    tokenizer = AutoTokenizer.from_pretrained(location, **gguf,
                                              trust_remote_code=served.plan_model.trust_remote_code)
    # The processes' metric files: named before prometheus_client is first imported (by forge.serve.metrics)
    metrics_dir = tempfile.mkdtemp(prefix="forge-metrics-")
    os.environ[METRICS_DIR_ENV] = metrics_dir
    try:
        server = build_server(served, settings, tokenizer, digest)
        print(startup_text(served, settings, server), flush=True)
        return _run(server, settings, log_level)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _api_key_digest(env_name: str | None) -> str | None:
    if env_name is None:
        return None
    key = os.environ.get(env_name, "")
    if not key.strip():
        raise ServeError(f"serving.api_key_env names the environment variable {env_name}, which is not set",
                         f"export {env_name}=<key> before forge serve, or remove serving.api_key_env to serve "
                         "without a key", doc="api-key-not-set")
    from forge.serve.api import key_digest

    return key_digest(key.strip())


def build_server(served: ServedModel, settings: Any, tokenizer: Any, api_key_digest: str | None) -> Any:
    """The LitServer for a served run; `run()` starts it."""
    import litserve as ls

    from forge.serve.api import ForgeAPI
    from forge.serve.metrics import RequestGuard, metrics_text

    limits = Limits(max_new_tokens=settings.max_new_tokens, max_input_tokens=settings.max_input_tokens,
                    context_length=served.context_length, max_pending=settings.max_pending_requests,
                    max_batch_inputs=settings.max_batch_inputs, timeout=settings.timeout)
    # CPU workers share the cores, unless OMP_NUM_THREADS says how many threads each may use
    threads = (None if os.environ.get("OMP_NUM_THREADS")
               else max(1, (os.cpu_count() or 1) // settings.workers_per_device))
    api_class = ForgeAPI
    if served.plan_model.task == "token_classification":  # a tagger: /v1/genes, no generation
        from forge.serve.tagger import TaggerAPI as api_class  # type: ignore[assignment]
    api = api_class(served, limits, max_batch_size=settings.max_batch_size, batch_timeout=settings.batch_timeout,
                    api_key_digest=api_key_digest, threads=threads)
    api.spec.tokenizer = tokenizer
    api.spec.pending = multiprocessing.get_context("fork").Value("i", 0)  # shared by the forked HTTP servers
    # A list, so that LitServe applies `authorize` to the API's routes only: /health and /metrics stay open
    # for load balancers and Prometheus.
    server = ls.LitServer(
        [api], accelerator=settings.device, devices="auto", workers_per_device=settings.workers_per_device,
        timeout=settings.timeout, max_payload_size=settings.max_request_bytes, restart_workers=True,
        middlewares=[(RequestGuard, {"max_bytes": settings.max_request_bytes, "endpoints": API_PATHS + OPEN_PATHS,
                                     "json_paths": API_PATHS})],
        model_metadata={"run": served.run_name, "kind": served.kind, "base": served.base_source,
                        "weights": served.weights_dir})
    install_error_handlers(server.app)

    async def metrics_endpoint() -> Any:
        from fastapi import Response

        body, content_type = metrics_text(api.spec)
        return Response(body, media_type=content_type)

    server.app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return server


def install_error_handlers(app: Any) -> None:
    """Every error as JSON in the OpenAI shape; a malformed body is 400, a body that breaks the schema 422."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from forge.serve.protocol import error_body

    async def http_error(request: Any, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        body = {"error": detail} if isinstance(detail, dict) and "message" in detail else \
            error_body(exc.status_code, str(detail), _status_code_name(exc.status_code))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    async def invalid_request(request: Any, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:
            reason = (bad_json.get("ctx") or {}).get("error", "")
            return JSONResponse(error_body(400, f"the request body is not valid JSON{': ' + reason if reason else ''}",
                                           "invalid_json"), status_code=400)
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                            for e in errors[:5])
        code = "missing_field" if first.get("type") == "missing" else "invalid_value"
        return JSONResponse(error_body(422, message, code, where or None), status_code=422)

    async def internal_error(request: Any, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"internal error ({type(exc).__name__}); the server log has the details",
                                       "internal_error"), status_code=500)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, internal_error)


def _status_code_name(status: int) -> str:
    return {401: "invalid_api_key", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
            504: "timeout"}.get(status, "http_error")


def startup_text(served: ServedModel, settings: Any, server: Any) -> str:
    where = f"http://{'127.0.0.1' if settings.host == '127.0.0.1' else settings.host}:{settings.port}"
    what = (f"LoRA adapter {served.weights_dir} on {served.base_source}" + (" (merged)" if served.merge_adapter else "")
            if served.kind == "adapter" else f"full model {served.weights_dir}")
    devices = ", ".join(str(d) if isinstance(d, str) else ",".join(d) for d in server.devices)
    lines = [
        f"forge serve {served.run_dir}: {what}",
        f"  device     {devices} x {settings.workers_per_device} worker(s), dtype {settings.dtype}"
        + (f", {settings.quantization}" if settings.quantization != "none" else ""),
        f"  batching   up to {settings.max_batch_size} generations, waiting up to {settings.batch_timeout:g}s",
        f"  limits     prompt {settings.max_input_tokens} tokens, max_tokens {settings.max_new_tokens}, body "
        f"{settings.max_request_bytes} bytes, {settings.max_pending_requests} pending, timeout {settings.timeout:g}s",
        f"  api key    " + (f"required (from ${settings.api_key_env})" if settings.api_key_env
                            else "none: anyone who can reach the port may call it"),
        f"  endpoints  {where} " + (" ".join(p for p in API_PATHS if p in TAGGER_PATHS)
                                     if served.plan_model.task == "token_classification" else
                                     " ".join(p for p in API_PATHS if p != "/v1/genes")),
        f"  health     {where}/health (200 once the model is loaded), {where}/metrics (Prometheus)",
    ]
    lines += [f"  note       {note}" for note in served.notes]
    return "\n".join(lines)


class _QuietShutdown(logging.Filter):
    """Drops LitServe's report that its worker monitor lost the process manager, which it shuts down itself
    while stopping; any other record passes."""

    stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.stopping and "Monitoring worker crashed" in record.getMessage())


def interface_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to one interface's address, as uvicorn would bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn wraps the descriptor as a socket of another family and so skips its TCP_NODELAY; set it here,
    # where the accepted connections inherit it (small streamed pieces are not held back by Nagle's algorithm)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _run(server: Any, settings: Any, log_level: str) -> int:
    """Run until Ctrl-C or SIGTERM; both stop the workers and servers cleanly."""
    main_pid = os.getpid()
    quiet = _QuietShutdown()
    logging.getLogger("litserve.server").addFilter(quiet)

    def stop(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a forked HTTP server inherits this handler; it has stopped already
            raise SystemExit(0)
        quiet.stopping = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    listener = None
    try:
        host, bind = settings.host, {}
        if host not in LITSERVE_HOSTS:
            # LitServe binds only its three hosts; for one interface's address Forge binds the socket and hands it
            # over by file descriptor (uvicorn's fd), the host given to LitServe then being a placeholder
            listener = interface_socket(host, settings.port)
            host, bind = "127.0.0.1", {"fd": listener.fileno()}
        server.run(host=host, port=settings.port, log_level=log_level, generate_client_file=False, **bind)
    except KeyboardInterrupt:  # LitServe stops its processes itself on Ctrl-C; a SIGTERM is made one
        pass
    except RuntimeError as e:  # LitServe: a model worker failed in setup (its traceback is above)
        raise ServeFailed(f"the server could not start: {e}",
                          "the model worker's error is printed above") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if listener is not None:
            listener.close()
    print("forge serve: stopped", file=sys.stderr, flush=True)
    return 0

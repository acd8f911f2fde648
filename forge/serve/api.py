"""The LitServe API of a Forge run: `setup` loads the run's model in each worker, `decode_request` checks a
job, `predict` generates a dynamic batch token by token, `encode_response` passes the items on, and
`authorize` checks the API key on the HTTP side. The endpoints themselves are in `forge.serve.spec`.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Iterator
from typing import Any

import litserve as ls
from fastapi import Request

from forge.serve.generate import GenerationJob, eos_token_ids, generate_stream
from forge.serve.load import ServedModel, load_for_serving
from forge.serve.protocol import ApiError, Limits
from forge.serve.spec import ForgeSpec


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ForgeAPI(ls.LitAPI):
    """One model per worker; every endpoint's jobs batched together (LitServe's dynamic batching)."""

    def __init__(self, served: ServedModel, limits: Limits, *, max_batch_size: int = 1, batch_timeout: float = 0.0,
                 api_key_digest: str | None = None, threads: int | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout,
                         spec=ForgeSpec(limits, served.run_name, served.chat_prompts))
        self.served = served
        self.limits = limits
        self.api_key_digest = api_key_digest  # a digest: the key itself is never kept or sent to the workers
        self.threads = threads

    # ------------------------------------------------------------------------------ HTTP processes
    def authorize(self, request: Request) -> None:
        """The API key as `Authorization: Bearer KEY` (what OpenAI clients send) or `X-API-Key: KEY`."""
        if self.api_key_digest is None:
            return
        supplied = request.headers.get("x-api-key") or ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token:
            supplied = token.strip()
        if not supplied or not hmac.compare_digest(key_digest(supplied), self.api_key_digest):
            raise ApiError(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                           "invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    # ------------------------------------------------------------------------------ model workers
    def setup(self, device: str) -> None:
        import torch
        from transformers.utils import logging as transformers_logging

        from forge.console import quiet_libraries

        started = time.perf_counter()
        # a spawned worker starts with Python's warning filters; and no loading bar: the server prints its own
        # lines, and tqdm's multiprocessing lock would be left behind as a "leaked semaphore" when it stops
        quiet_libraries()
        transformers_logging.disable_progress_bar()
        if device == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        self.model, self.tokenizer = load_for_serving(self.served, device)
        self.eos = eos_token_ids(self.model, self.tokenizer)
        self.device_name = device
        # one short generation so the first request does not pay for kernel selection and allocator warm-up
        job = GenerationJob(tuple(self.tokenizer("warm up")["input_ids"]), max_new_tokens=2)
        for _ in generate_stream(self.model, self.tokenizer, [job], self.eos):
            pass
        print(f"forge serve: model worker {os.getpid()} ready on {device} in {time.perf_counter() - started:.1f}s",
              flush=True)

    def decode_request(self, request: Any) -> GenerationJob:
        """Jobs were checked by the HTTP side; check again, since anything on the queue reaches the model."""
        if not isinstance(request, GenerationJob):
            raise ApiError(400, f"expected a generation job, got {type(request).__name__}", "invalid_request")
        if len(request.input_ids) > self.limits.max_input_tokens or not request.input_ids:
            raise ApiError(400, "the prompt is empty or over serving.max_input_tokens", "context_length_exceeded")
        if not 1 <= request.max_new_tokens <= self.limits.max_new_tokens:
            raise ApiError(400, "max_tokens is over serving.max_new_tokens", "max_tokens_exceeded")
        return request

    def predict(self, x: Any) -> Iterator[Any]:
        from forge.serve.metrics import record_gpu_memory, record_items, worker_metrics

        batched = self.max_batch_size > 1
        jobs = list(x) if batched else [x]
        worker_metrics()["batch"].observe(len(jobs))
        try:
            for items in generate_stream(self.model, self.tokenizer, jobs, self.eos):
                record_items(items)
                yield items if batched else items[0]
        except Exception as e:
            if type(e).__name__ != "OutOfMemoryError":
                raise
            import torch

            torch.cuda.empty_cache()  # the next batch starts clean; this one's requests get 503
            raise ApiError(503, "the GPU ran out of memory for this batch; retry, or lower serving.max_batch_size "
                                "or max_tokens", "out_of_memory") from None
        finally:
            record_gpu_memory(self.device_name)

    def encode_response(self, output: Iterator[Any]) -> Iterator[Any]:
        yield from output  # items are JSON-ready dicts (None: nothing new for that job this step)

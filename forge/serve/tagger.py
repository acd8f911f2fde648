"""Serving a token classifier (`model.task: token_classification`): the text of a request is cut into words,
each word tagged by the model (its first sub-token's label, as it was trained), and the IOB tags read back as
mentions with character offsets into the text the client sent.

Endpoints: /v1/genes (text in, mentions out), /v1/analyze (the genes of the generative servers' analysis, found
by the tagger, with their mentions) and /v1/models. All feed one request queue; the model workers tag a
dynamic batch of texts in one forward pass.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from typing import Any

import litserve as ls
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem
from pydantic import Field

from forge.model.tagging import find_mentions
from forge.serve.api import ForgeAPI
from forge.serve.load import ServedModel, load_for_serving
from forge.serve.protocol import AnalyzeRequest, ApiError, Body, Limits


class GenesRequest(Body):
    text: str = Field(..., min_length=1, description="An abstract, a paper's text or a sentence.")
    truncate: bool = Field(False, description="Search a text over the input limit up to the limit instead of "
                                              "refusing it.")


class TaggerSpec(LitSpec):
    """/v1/genes, /v1/analyze and /v1/models of a token classifier."""

    def __init__(self, limits: Limits, model_name: str) -> None:
        super().__init__()
        self.api_path = "/v1/genes"  # the name LitServe gives the request queue and the workers
        self.limits = limits
        self.model_name = model_name
        self.tokenizer: Any = None  # HTTP side only, set by build_server
        self.pending: Any = None  # a multiprocessing.Value: texts queued or being tagged, over all servers

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(tokenizer=None, pending=None)
        return state

    def pre_setup(self, lit_api: Any) -> None:
        for path, endpoint, methods in (("/v1/models", self.list_models, ["GET"]),
                                        ("/v1/genes", self.genes, ["POST"]),
                                        ("/v1/analyze", self.analyze, ["POST"])):
            self.add_endpoint(path, endpoint, methods)

    def decode_request(self, request: Any, context_kwargs: dict[str, Any] | None = None) -> Any:
        return request

    def encode_response(self, output: Any, context_kwargs: dict[str, Any] | None = None) -> Any:
        return output

    # ------------------------------------------------------------------------------------------ endpoints
    async def list_models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0,
                                            "owned_by": "forge"}]}

    async def genes(self, body: GenesRequest) -> dict[str, Any]:
        await self._check_length(body.text, body.truncate)
        [mentions] = await self._tag([body.text])
        return {"model": self.model_name, "mentions": mentions, "genes": _unique(m["text"] for m in mentions)}

    async def analyze(self, body: AnalyzeRequest) -> dict[str, Any]:
        if "fields" in body.model_fields_set and set(body.fields) - {"genes"}:
            raise ApiError(400, "this run is a token classifier: it finds genes, not methods or findings",
                           "unsupported_field", "fields")
        await self._check_length(body.text, body.truncate)
        [mentions] = await self._tag([body.text])
        return {"model": self.model_name, "genes": _unique(m["text"] for m in mentions), "mentions": mentions}

    # ----------------------------------------------------------------------------------------- helpers
    async def _check_length(self, text: str, truncate: bool) -> None:
        from forge.data.subwords import join_words, split_words

        words, _ = join_words([text[s:e] for s, e in split_words(text)])
        count = len(await asyncio.to_thread(lambda: self.tokenizer(words)["input_ids"]))
        limit = tagging_limit(self.limits)
        if count > limit and not truncate:
            raise ApiError(400, f"the text has {count} tokens, over the limit of {limit} (serving.max_input_tokens "
                                "and the model's context); shorten it, or send truncate: true",
                           "context_length_exceeded", "text")

    async def _tag(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Queue the texts for the workers and wait for their mentions (504 after serving.timeout)."""
        if self.pending is not None:
            with self.pending.get_lock():
                if self.pending.value + len(texts) > self.limits.max_pending:
                    raise ApiError(429, f"the server is busy: {self.pending.value} texts are pending and the limit "
                                        f"is {self.limits.max_pending} (serving.max_pending_requests); retry shortly",
                                   "server_busy", headers={"Retry-After": "1"})
                self.pending.value += len(texts)
        uids = []
        try:
            for text in texts:
                uid = uuid.uuid4().hex
                self.response_buffer[uid] = ResponseBufferItem(event=asyncio.Event())
                self.request_queue.put((self.response_queue_id, uid, time.monotonic(), text))
                uids.append(uid)
            results = []
            for uid in uids:
                entry = self.response_buffer[uid]
                try:
                    await asyncio.wait_for(entry.event.wait(), self.limits.timeout)
                except TimeoutError:
                    raise ApiError(504, f"no answer within {self.limits.timeout:g}s (serving.timeout)",
                                   "timeout") from None
                response, status = self.response_buffer[uid].response
                if status == LitAPIStatus.ERROR:
                    from forge.serve.spec import _worker_error

                    raise _worker_error(response)
                results.append(response)
            return results
        finally:
            for uid in uids:
                self.response_buffer.pop(uid, None)
            if self.pending is not None:
                with self.pending.get_lock():
                    self.pending.value -= len(texts)


class TaggerAPI(ls.LitAPI):
    """One token classifier per worker; the texts of a dynamic batch tagged together."""

    authorize = ForgeAPI.authorize  # the same API key check as the generative server

    def __init__(self, served: ServedModel, limits: Limits, *, max_batch_size: int = 1, batch_timeout: float = 0.0,
                 api_key_digest: str | None = None, threads: int | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout,
                         spec=TaggerSpec(limits, served.run_name))
        self.served = served
        self.limits = limits
        self.api_key_digest = api_key_digest
        self.threads = threads

    def setup(self, device: str) -> None:
        import torch

        started = time.perf_counter()
        if device == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        self.model, self.tokenizer = load_for_serving(self.served, device)
        find_mentions(self.model, self.tokenizer, ["warm up"])  # the first request pays no allocator warm-up
        print(f"forge serve: model worker {os.getpid()} ready on {device} in {time.perf_counter() - started:.1f}s",
              flush=True)

    def decode_request(self, request: Any) -> str:
        if not isinstance(request, str):
            raise ApiError(400, f"expected a text, got {type(request).__name__}", "invalid_request")
        return request

    def predict(self, x: Any) -> list[list[dict[str, Any]]] | list[dict[str, Any]]:
        batched = self.max_batch_size > 1
        texts = list(x) if batched else [x]
        found = find_mentions(self.model, self.tokenizer, texts, tagging_limit(self.limits))
        out = [[{"start": s, "end": e, "text": text[s:e], "type": kind} for s, e, kind in spans]
               for text, spans in zip(texts, found)]
        return out if batched else out[0]

    def encode_response(self, output: Any) -> Any:
        return output


def tagging_limit(limits: Limits) -> int:
    """Tokens a text may have: serving.max_input_tokens, no more than the model's positions."""
    return min(limits.max_input_tokens, limits.context_length or limits.max_input_tokens)


def _unique(names: Any) -> list[str]:
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen

"""The HTTP endpoints, as a LitServe spec: LitServe's OpenAISpec (so OpenAI clients work) widened with Forge's
own routes. All of them feed one request queue, so the model workers batch chat, generation, summaries and
analyses together.

Every request is checked here, in the HTTP process, before it is queued: the prompt is rendered and counted
with the run's tokenizer, so an over-long prompt or max_tokens is refused with 400 even for a stream (whose
200 status would otherwise be sent before a worker sees it). Workers receive `GenerationJob`s and answer
with JSON items: `{"text", "finish_reason", "prompt_tokens", "completion_tokens"}`.
"""
from __future__ import annotations

import asyncio
import json
import pickle
import time
import uuid
from collections import deque
from dataclasses import replace
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from litserve.specs.openai import (ChatCompletionChunk, ChatCompletionResponse,
                                   ChatCompletionResponseChoice, ChatCompletionStreamingChoice, ChatMessage,
                                   ChoiceDelta, OpenAISpec, UsageInfo)
from litserve.utils import LitAPIStatus, ResponseBufferItem
from pydantic import ValidationError
from starlette.background import BackgroundTask

from forge.serve.generate import GenerationJob
from forge.serve.prompts import (ANALYSIS_FIELDS, encode, encode_messages, fit_text, parse_analysis,
                                 task_prompt, truncation_budget)
from forge.serve.protocol import (BATCH_MODELS, AnalyzeRequest, ApiError, BatchRequest, ChatRequest,
                                  GenerateRequest, Limits, PaperInput, Sampling, SummarizeRequest, parse_chat_request)

CHAT_ROLES = ("system", "user", "assistant")
MAX_STOPS, MAX_STOP_CHARS, MAX_CHOICES = 4, 100, 8
SUMMARY_TASK = "summary"


class ForgeSpec(OpenAISpec):
    """/v1/chat/completions (OpenAI), /v1/models, /v1/generate, /v1/summarize, /v1/analyze, /v1/batch."""

    def __init__(self, limits: Limits, model_name: str, chat_prompts: bool) -> None:
        super().__init__()
        self.limits = limits
        self.model_name = model_name
        self.chat_prompts = chat_prompts
        self.tokenizer: Any = None  # HTTP side only: set in the main process, inherited by the forked servers
        self.pending: Any = None  # a multiprocessing.Value: generations queued or running, over all servers

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # the workers are spawned with a pickled copy; they need no HTTP state
        state.update(tokenizer=None, pending=None)
        return state

    def pre_setup(self, lit_api: Any) -> None:
        super().pre_setup(lit_api)  # checks the API's generator methods, adds /v1/chat/completions
        for path, endpoint, methods in (("/v1/models", self.list_models, ["GET"]),
                                        ("/v1/generate", self.generate, ["POST"]),
                                        ("/v1/summarize", self.summarize, ["POST"]),
                                        ("/v1/analyze", self.analyze, ["POST"]),
                                        ("/v1/batch", self.batch_endpoint, ["POST"])):
            self.add_endpoint(path, endpoint, methods)

    def populate_context(self, context: dict[str, Any], request: Any) -> None:
        """Workers get GenerationJobs, which carry everything themselves."""

    def decode_request(self, request: Any, context_kwargs: dict[str, Any] | None = None) -> Any:
        return request

    # ------------------------------------------------------------------------------------------ endpoints
    async def list_models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.model_name, "object": "model", "created": 0,
                                            "owned_by": "forge"}]}

    async def chat_completion(self, raw: Request) -> Any:
        """OpenAI's chat completions: the parameters it defines that Forge honours behave as OpenAI's; the rest
        are refused with 400 unsupported_parameter (see protocol.parse_chat_request), never ignored."""
        try:
            body = await raw.json()
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON", "invalid_json") from None
        request = parse_chat_request(body)
        n = request.n or 1
        if not 1 <= n <= MAX_CHOICES or (request.stream and n > 1):
            raise ApiError(400, f"n must be from 1 to {MAX_CHOICES}, and 1 for a stream", "invalid_value", "n")
        messages = _chat_messages(request)
        ids = await asyncio.to_thread(encode_messages, self.tokenizer, messages)
        # OpenAI's defaults: temperature 1, top_p 1; max_completion_tokens is the newer name of max_tokens
        max_tokens = request.max_completion_tokens if request.max_completion_tokens is not None else request.max_tokens
        sampling = Sampling(max_tokens=max_tokens,
                            temperature=request.temperature if request.temperature is not None else 1.0,
                            top_p=request.top_p if request.top_p is not None else 1.0, stop=request.stop)
        named = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
        job = self._job(ids, sampling, bool(request.stream), "messages", param_max=named)
        # a seed makes each choice reproducible: choice i draws from seed + i (n choices are not n copies)
        jobs = [job if request.seed is None else replace(job, seed=request.seed + i) for i in range(n)]
        uids = self._submit(jobs)
        if request.stream:
            return self._event_stream(self._chat_events(uids[0], len(ids)), uids)
        results = await self._results(uids)
        choices = [ChatCompletionResponseChoice(index=i, message=ChatMessage(role="assistant", content=r["text"]),
                                                finish_reason=r["finish_reason"]) for i, r in enumerate(results)]
        return ChatCompletionResponse(model=self.model_name, choices=choices,
                                      usage=UsageInfo(**_usage(results, len(ids))))

    async def generate(self, body: GenerateRequest) -> Any:
        chat = self.chat_prompts if body.chat is None else body.chat
        ids = await asyncio.to_thread(encode, self.tokenizer, body.prompt, chat=chat)
        uids = self._submit([self._job(ids, body, body.stream, "prompt")])
        if body.stream:
            return self._event_stream(self._text_events(uids[0]), uids)
        [result] = await self._results(uids)
        return {"model": self.model_name, "text": result["text"], "finish_reason": result["finish_reason"],
                "usage": _usage([result])}

    async def summarize(self, body: SummarizeRequest) -> Any:
        jobs, read = await self._paper_jobs(body, [SUMMARY_TASK], body.stream)
        uids = self._submit(jobs)
        if body.stream:
            return self._event_stream(self._text_events(uids[0], read), uids)
        [result] = await self._results(uids)
        return _with_input(_summary(result, self.model_name), read)

    async def analyze(self, body: AnalyzeRequest) -> Any:
        fields = [f for f in ANALYSIS_FIELDS if f in body.fields]
        jobs, read = await self._paper_jobs(body, fields, False)
        results = await self._results(self._submit(jobs))
        return _with_input(_analysis(fields, results, self.model_name), read)

    async def batch_endpoint(self, body: BatchRequest) -> Any:
        """Many inputs of one task in one request; all are checked before any is queued."""
        if len(body.inputs) > self.limits.max_batch_inputs:
            raise ApiError(400, f"{len(body.inputs)} inputs, over the limit of {self.limits.max_batch_inputs} "
                                "(serving.max_batch_inputs); split the batch", "too_many_inputs", "inputs")
        requests = [_batch_item(body.task, i, item) for i, item in enumerate(body.inputs)]
        jobs: list[GenerationJob] = []
        spans: list[tuple[int, int]] = []
        reads: list[dict[str, Any] | None] = []
        for i, request in enumerate(requests):
            try:
                if body.task == "generate":
                    chat = self.chat_prompts if request.chat is None else request.chat
                    ids = await asyncio.to_thread(encode, self.tokenizer, request.prompt, chat=chat)
                    new, read = [self._job(ids, request, False, "prompt")], None
                else:
                    tasks = [SUMMARY_TASK] if body.task == "summarize" else \
                        [f for f in ANALYSIS_FIELDS if f in request.fields]
                    new, read = await self._paper_jobs(request, tasks, False)
            except ApiError as e:
                raise ApiError(e.status_code, f"inputs[{i}]: {e.detail['message']}", e.detail["code"],
                               f"inputs[{i}].{e.detail['param']}") from None
            spans.append((len(jobs), len(jobs) + len(new)))
            reads.append(read)
            jobs += new
        results = await self._results(self._submit(jobs))
        out = []
        for request, (start, end), read in zip(requests, spans, reads):
            part = results[start:end]
            if body.task == "generate":
                out.append({"text": part[0]["text"], "finish_reason": part[0]["finish_reason"], "usage": _usage(part)})
            elif body.task == "summarize":
                out.append(_with_input(_summary(part[0], None), read))
            else:
                out.append(_with_input(_analysis([f for f in ANALYSIS_FIELDS if f in request.fields], part, None),
                                       read))
        return {"model": self.model_name, "task": body.task, "results": out, "usage": _usage(results)}

    # ----------------------------------------------------------------------------------- checks and jobs
    def _job(self, ids: Sequence[int], sampling: Sampling, stream: bool, param: str,
             hint: str = "shorten it", *, param_max: str = "max_tokens") -> GenerationJob:
        """A checked GenerationJob: prompt and max_tokens within the limits and the model's context."""
        limits = self.limits
        if len(ids) > limits.max_input_tokens:
            raise ApiError(400, f"the prompt has {len(ids)} tokens, over the limit of {limits.max_input_tokens} "
                                f"(serving.max_input_tokens); {hint}", "context_length_exceeded", param)
        room = (limits.context_length - len(ids)) if limits.context_length else None
        if room is not None and room < 1:
            raise ApiError(400, f"the prompt has {len(ids)} tokens and fills the model's context of "
                                f"{limits.context_length}; {hint}", "context_length_exceeded", param)
        if sampling.max_tokens is None:
            max_tokens = min(limits.max_new_tokens, room or limits.max_new_tokens)
        else:
            max_tokens = sampling.max_tokens
            if max_tokens > limits.max_new_tokens:
                raise ApiError(400, f"max_tokens {max_tokens} is over the limit of {limits.max_new_tokens} "
                                    "(serving.max_new_tokens)", "max_tokens_exceeded", param_max)
            if room is not None and max_tokens > room:
                raise ApiError(400, f"the prompt ({len(ids)} tokens) and max_tokens {max_tokens} exceed the "
                                    f"model's context of {limits.context_length} tokens", "context_length_exceeded",
                               param_max)
        stop = [sampling.stop] if isinstance(sampling.stop, str) else list(sampling.stop or [])
        if len(stop) > MAX_STOPS or any(not s or len(s) > MAX_STOP_CHARS for s in stop):
            raise ApiError(400, f"stop takes up to {MAX_STOPS} non-empty strings of at most {MAX_STOP_CHARS} "
                                "characters", "invalid_value", "stop")
        return GenerationJob(tuple(ids), max_tokens, sampling.temperature, sampling.top_p, tuple(stop), stream)

    async def _paper_jobs(self, body: PaperInput, tasks: Sequence[str],
                          stream: bool) -> tuple[list[GenerationJob], dict[str, Any] | None]:
        """The jobs of a paper's tasks, and with truncate, how much of the paper they read (the `input` field of
        the response: characters read of the whole, the least over the tasks)."""
        jobs, read = [], len(body.text)
        limits = self.limits
        budget = truncation_budget(limits.max_input_tokens, limits.context_length, body.max_tokens,
                                   limits.max_new_tokens)
        for task in tasks:
            text = body.text
            if body.truncate:
                text = await asyncio.to_thread(fit_text, self.tokenizer, task, text, body.title, budget,
                                               chat=self.chat_prompts)
                read = min(read, len(text))
            ids = await asyncio.to_thread(encode, self.tokenizer, task_prompt(task, text, body.title),
                                          chat=self.chat_prompts)
            jobs.append(self._job(ids, body, stream, "text", "shorten it, or send truncate: true"))
        if not body.truncate:
            return jobs, None
        total = len(body.text)
        return jobs, {"truncated": read < total, "characters_read": read, "characters": total,
                      "fraction_read": round(read / total, 4) if total else 1.0}

    # ---------------------------------------------------------------------------- queue and responses
    def _submit(self, jobs: Sequence[GenerationJob]) -> list[str]:
        """Queue the jobs for the workers, or refuse them all with 429 when the server is full."""
        if self.pending is not None:
            with self.pending.get_lock():
                if self.pending.value + len(jobs) > self.limits.max_pending:
                    raise ApiError(429, f"the server is busy: {self.pending.value} generations are pending and "
                                        f"the limit is {self.limits.max_pending} (serving.max_pending_requests); "
                                        "retry shortly", "server_busy", headers={"Retry-After": "1"})
                self.pending.value += len(jobs)
        uids = []
        for job in jobs:
            uid = uuid.uuid4().hex
            self.response_buffer[uid] = ResponseBufferItem(event=asyncio.Event(), response_queue=deque())
            self.request_queue.put((self.response_queue_id, uid, time.monotonic(), job))
            uids.append(uid)
        return uids

    def _release(self, uid: str) -> None:
        """Forget a job (answered, failed or abandoned); idempotent."""
        if self.response_buffer.pop(uid, None) is not None and self.pending is not None:
            with self.pending.get_lock():
                self.pending.value -= 1

    async def _items(self, uid: str, each: bool) -> AsyncIterator[dict[str, Any]]:
        """The worker's items for a job, up to its final one; 504 when serving.timeout passes (in total, or,
        with each, between two items of a stream)."""
        entry = self.response_buffer.get(uid)
        if entry is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.timeout
        stream = self.data_streamer(entry.response_queue, entry.event, send_status=True)
        try:
            while True:
                try:
                    data, status = await asyncio.wait_for(anext(stream), max(0.0, deadline - loop.time()))
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ApiError(504, f"no answer within {self.limits.timeout:g}s (serving.timeout)",
                                   "timeout") from None
                if status == LitAPIStatus.ERROR:
                    raise _worker_error(data)
                if not data:
                    continue
                item = json.loads(data)
                yield item
                if item["finish_reason"]:
                    return
                if each:
                    deadline = loop.time() + self.limits.timeout
        finally:
            await stream.aclose()
            self._release(uid)

    async def _collect(self, uid: str) -> dict[str, Any]:
        parts, final = [], {"finish_reason": "stop", "prompt_tokens": 0, "completion_tokens": 0}
        async for item in self._items(uid, each=False):
            parts.append(item["text"])
            if item["finish_reason"]:
                final = item
        return {**final, "text": "".join(parts)}

    async def _results(self, uids: Sequence[str]) -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(self._collect(uid)) for uid in uids]
        try:
            return list(await asyncio.gather(*tasks))
        finally:
            for task in tasks:
                task.cancel()
            for uid in uids:
                self._release(uid)

    def _event_stream(self, events: AsyncIterator[str], uids: Sequence[str]) -> StreamingResponse:
        return StreamingResponse(events, media_type="text/event-stream",
                                 background=BackgroundTask(lambda: [self._release(u) for u in uids]))

    async def _text_events(self, uid: str, read: dict[str, Any] | None = None) -> AsyncIterator[str]:
        """Server-sent events of /v1/generate and /v1/summarize: text pieces, the final record, [DONE]."""
        try:
            async for item in self._items(uid, each=True):
                if item["finish_reason"]:
                    item = _with_input({"text": item["text"], "finish_reason": item["finish_reason"],
                                        "usage": _usage([item])}, read)
                else:
                    item = {"text": item["text"], "finish_reason": None}
                yield f"data: {json.dumps(item)}\n\n"
            yield "data: [DONE]\n\n"
        except HTTPException as e:
            yield f"data: {json.dumps({'error': _detail(e)})}\n\n"

    async def _chat_events(self, uid: str, prompt_tokens: int) -> AsyncIterator[str]:
        """OpenAI chat.completion.chunk events: the role, content deltas, the finish reason with usage, [DONE]."""
        chunk_id, created = f"chatcmpl-{uuid.uuid4().hex[:12]}", int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None, usage: UsageInfo | None = None) -> str:
            choice = ChatCompletionStreamingChoice(index=0, delta=ChoiceDelta(**delta), finish_reason=finish)
            body = ChatCompletionChunk(id=chunk_id, created=created, model=self.model_name, choices=[choice],
                                       usage=usage)
            return f"data: {body.model_dump_json()}\n\n"

        try:
            yield chunk({"role": "assistant", "content": ""})
            async for item in self._items(uid, each=True):
                if item["text"]:
                    yield chunk({"content": item["text"]})
                if item["finish_reason"]:
                    yield chunk({}, item["finish_reason"], UsageInfo(**_usage([item], prompt_tokens)))
            yield "data: [DONE]\n\n"
        except HTTPException as e:
            yield f"data: {json.dumps({'error': _detail(e)})}\n\n"


# ------------------------------------------------------------------------------------------------ helpers
def _chat_messages(request: ChatRequest) -> list[dict[str, str]]:
    if not request.messages:
        raise ApiError(400, "messages must hold at least one message", "invalid_value", "messages")
    messages = []
    for i, message in enumerate(request.messages):
        if message.role not in CHAT_ROLES:
            raise ApiError(400, f"messages[{i}].role {message.role!r} is not one of {', '.join(CHAT_ROLES)}",
                           "invalid_value", f"messages[{i}].role")
        content = message.content
        if isinstance(content, list):  # content parts: text only
            if any(getattr(part, "type", None) != "text" for part in content):
                raise ApiError(400, f"messages[{i}] has a non-text part; this model reads text only",
                               "unsupported_content", f"messages[{i}].content")
            content = "".join(part.text for part in content)
        messages.append({"role": message.role, "content": content or ""})
    return messages


def _batch_item(task: str, index: int, item: dict[str, Any]) -> Any:
    try:
        request = BATCH_MODELS[task].model_validate(item)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ApiError(422, f"inputs[{index}].{where}: {first['msg']}", "invalid_value",
                       f"inputs[{index}].{where}") from None
    if getattr(request, "stream", False):
        raise ApiError(422, f"inputs[{index}].stream: a batch input cannot stream", "invalid_value",
                       f"inputs[{index}].stream")
    return request


def _usage(results: Sequence[dict[str, Any]], prompt_tokens: int | None = None) -> dict[str, int]:
    prompt = prompt_tokens if prompt_tokens is not None else sum(r["prompt_tokens"] for r in results)
    completion = sum(r["completion_tokens"] for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _summary(result: dict[str, Any], model: str | None) -> dict[str, Any]:
    out = {"summary": result["text"].strip(), "finish_reason": result["finish_reason"], "usage": _usage([result])}
    return {"model": model, **out} if model else out


def _analysis(fields: Sequence[str], results: Sequence[dict[str, Any]], model: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {field: parse_analysis(field, r["text"]) for field, r in zip(fields, results)}
    out["raw"] = {field: r["text"] for field, r in zip(fields, results)}
    out["usage"] = _usage(results)
    return {"model": model, **out} if model else out


def _with_input(out: dict[str, Any], read: dict[str, Any] | None) -> dict[str, Any]:
    """A paper task's response, with how much of the paper was read when the request asked for truncation."""
    return {**out, "input": read} if read is not None else out


def _detail(error: HTTPException) -> dict[str, Any]:
    detail = error.detail
    if isinstance(detail, dict) and "message" in detail:
        return detail
    return ApiError(error.status_code, str(detail)).detail


def _worker_error(data: Any) -> HTTPException:
    """The HTTP error for a worker's failure: its own HTTPException, or 500 for anything else."""
    error = data
    if isinstance(data, bytes):
        try:
            error = pickle.loads(data)
        except Exception:  # an unpicklable error still gets a 500 with a message
            error = None
    if isinstance(error, HTTPException):
        if isinstance(error.detail, dict):
            return HTTPException(error.status_code, error.detail)
        code = "timeout" if error.status_code == 504 else None
        return ApiError(error.status_code, str(error.detail), code)
    name = type(error).__name__ if error is not None else "unknown error"
    return ApiError(500, f"generation failed in the model worker ({name}); the server log has the details",
                    "generation_failed")


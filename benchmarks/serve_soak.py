#!/usr/bin/env python3
"""Soak of `forge serve`: a bounded load of good and bad requests from many concurrent clients for a while.

Each of --clients threads sends requests one after another, drawn at random (seeded) from a mix: good
generations, chats and streams (greedy, a few tokens), and bad ones (malformed JSON, a missing or unknown
field, a prompt or max_tokens over the limits, a wrong or missing API key, a body over the size limit, a body
that is not JSON, an unknown endpoint). It stops after --duration seconds or --requests requests. Checks:

- the server process is alive at the end, and never answered 5xx;
- every request got exactly one answer, and that answer is its own: the server echoes each request's unique
  X-Request-ID, and a good answer's usage.prompt_tokens equals the token count of that request's own prompt
  (prompts differ in length), so an answer swapped between requests in a batch would be caught;
- the server's own request counters (/metrics) equal what the clients saw, by endpoint and status;
- every refusal has the status and OpenAI-style error code the docs promise (429 server_busy is allowed for a
  good request when the queue is full);
- the resident memory of the server's processes (HTTP server and model workers) stays flat: sampled every
  second; start (after a warm-up), max and end are reported.

    python benchmarks/serve_soak.py --duration 180 --clients 32          # serves a run it makes (tiny model, CPU)
    python benchmarks/serve_soak.py --run-dir runs/quickstart --duration 600

It prints a JSON report and a Markdown block for BENCHMARKS.md, and exits 1 when a check fails.
tests/serve/test_serve_soak.py runs the same load for a short while in CI (FORGE_SOAK_SECONDS makes it longer).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WORDS = ("BRCA1 TP53 PTEN regulates DNA repair in breast cells we used CRISPR screens and RNA-seq loss of "
         "activates tumor growth lung tissue expression variant genome sequencing").split()
# what each kind of request must get: (status, error code); None for a good answer
EXPECTED: dict[str, tuple[int, str | None]] = {
    "generate": (200, None), "chat": (200, None), "generate_stream": (200, None), "chat_stream": (200, None),
    "malformed_json": (400, "invalid_json"), "missing_field": (422, "missing_field"),
    "unknown_field": (422, "invalid_value"), "long_prompt": (400, "context_length_exceeded"),
    "too_many_tokens": (400, "max_tokens_exceeded"), "wrong_key": (401, "invalid_api_key"),
    "no_key": (401, "invalid_api_key"), "too_large": (413, "request_too_large"),
    "not_json": (415, "unsupported_media_type"), "no_such_endpoint": (404, "not_found"),
}
# good requests are about half of the load
MIX = {"generate": 14, "chat": 14, "generate_stream": 10, "chat_stream": 8, "malformed_json": 6, "missing_field": 6,
       "unknown_field": 5, "long_prompt": 6, "too_many_tokens": 6, "wrong_key": 6, "no_key": 4, "too_large": 4,
       "not_json": 5, "no_such_endpoint": 6}
GOOD = ("generate", "chat", "generate_stream", "chat_stream")


@dataclass
class Limits:
    """The served run's limits the bad requests are built against."""
    max_new_tokens: int
    max_input_tokens: int
    max_request_bytes: int


@dataclass
class Outcome:
    kind: str
    request_id: str
    endpoint: str
    status: int
    seconds: float
    problem: str = ""  # empty when the answer is what it must be


@dataclass
class SoakReport:
    outcomes: list[Outcome] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)
    seconds: float = 0.0
    alive: bool = True
    server_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        by_status = Counter(o.status for o in self.outcomes)
        by_kind = Counter(o.kind for o in self.outcomes)
        good = sorted(o.seconds for o in self.outcomes if o.kind in GOOD and o.status == 200)
        warm = [b for t, b in self.rss if t >= min(10.0, self.seconds / 5)] or [b for _, b in self.rss]
        return {
            "requests": len(self.outcomes), "seconds": round(self.seconds, 1),
            "requests_per_second": round(len(self.outcomes) / self.seconds, 1) if self.seconds else 0.0,
            "good_answered": len(good), "by_status": dict(sorted(by_status.items())), "by_kind": dict(by_kind),
            "latency_good_p50_s": round(_quantile(good, 0.5), 3), "latency_good_p99_s": round(_quantile(good, 0.99), 3),
            "rss_start_mib": _mib(warm[0]) if warm else None, "rss_max_mib": _mib(max(warm)) if warm else None,
            "rss_end_mib": _mib(warm[-1]) if warm else None, "rss_samples": len(self.rss),
            "rss_every_30s_mib": [_mib(b) for t, b in self.rss if int(t) % 30 == 0],
            "server_alive": self.alive, "problems": self.problems[:20], "problem_count": len(self.problems),
        }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _mib(value: int) -> float:
    return round(value / 2**20, 1)


# ------------------------------------------------------------------------------------------------ requests
class Client:
    """One concurrent client: a keep-alive session that sends requests one after another."""

    def __init__(self, url: str, api_key: str, limits: Limits, tokenizer: Any, rng: random.Random) -> None:
        self.url, self.api_key, self.limits, self.tokenizer, self.rng = url, api_key, limits, tokenizer, rng
        self.session = requests.Session()

    def prompt(self, request_id: str) -> str:
        """A prompt of its own: the request id plus 1-40 words, so lengths differ between requests."""
        return f"request {request_id}: " + " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(1, 40)))

    def send(self, kind: str) -> Outcome:
        request_id = uuid.uuid4().hex
        auth = {"Authorization": f"Bearer {self.api_key}", "X-Request-ID": request_id}
        json_headers = {**auth, "Content-Type": "application/json"}
        max_tokens = self.rng.randint(1, 8)
        prompt = self.prompt(request_id)
        expected_tokens: int | None = None
        stream = kind.endswith("_stream")
        path, data, headers = "/v1/generate", b"", json_headers
        if kind in ("generate", "generate_stream"):
            from forge.serve.prompts import encode

            expected_tokens = len(encode(self.tokenizer, prompt, chat=False))
            data = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "chat": False, "stream": stream}).encode()
        elif kind in ("chat", "chat_stream"):
            from forge.serve.prompts import encode_messages

            messages = [{"role": "user", "content": prompt}]
            expected_tokens = len(encode_messages(self.tokenizer, messages))
            path = "/v1/chat/completions"
            data = json.dumps({"model": "any", "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                               "stream": stream}).encode()
        elif kind == "malformed_json":
            data = b'{"prompt": "' + prompt.encode() + b'", "max_tokens": '
        elif kind == "missing_field":
            data = json.dumps({"max_tokens": max_tokens}).encode()
        elif kind == "unknown_field":
            data = json.dumps({"prompt": prompt, "max_new_tokens": max_tokens}).encode()
        elif kind == "long_prompt":
            words = " ".join(self.rng.choice(WORDS) for _ in range(self.limits.max_input_tokens * 2))
            data = json.dumps({"prompt": f"{prompt} {words}", "max_tokens": 1}).encode()
        elif kind == "too_many_tokens":
            data = json.dumps({"prompt": prompt, "max_tokens": self.limits.max_new_tokens + 1}).encode()
        elif kind in ("wrong_key", "no_key"):
            path = self.rng.choice(["/v1/generate", "/v1/chat/completions"])
            headers = {"X-Request-ID": request_id, "Content-Type": "application/json"}
            if kind == "wrong_key":
                headers["Authorization"] = "Bearer wrong-" + request_id
            data = json.dumps({"prompt": prompt, "max_tokens": 1} if path == "/v1/generate" else
                              {"messages": [{"role": "user", "content": prompt}], "max_tokens": 1}).encode()
        elif kind == "too_large":
            data = json.dumps({"prompt": "x" * (self.limits.max_request_bytes + 10)}).encode()
        elif kind == "not_json":
            headers = {**auth, "Content-Type": "text/plain"}
            data = prompt.encode()
        elif kind == "no_such_endpoint":
            path = self.rng.choice(["/v1/completions/nope", "/v2/generate", "/admin"])
            data = json.dumps({"prompt": prompt}).encode()
        else:
            raise ValueError(kind)

        started = time.perf_counter()
        try:
            response = self.session.post(self.url + path, data=data, headers=headers, timeout=120, stream=stream)
            status = response.status_code
            if stream and status == 200:
                problem = self._check_stream(kind, response, expected_tokens, max_tokens)
            else:
                problem = self._check(kind, response, expected_tokens, max_tokens)
            echoed = response.headers.get("x-request-id")
            if echoed != request_id:
                problem = problem or f"answer carries X-Request-ID {echoed!r}, not its request's {request_id!r}"
            response.close()
        except requests.RequestException as e:
            self.session = requests.Session()  # a broken connection: start a new one
            return Outcome(kind, request_id, path, 0, time.perf_counter() - started,
                           f"no answer: {type(e).__name__}: {e}"[:300])
        return Outcome(kind, request_id, path, status, time.perf_counter() - started, problem)

    def _check(self, kind: str, response: requests.Response, expected_tokens: int | None, max_tokens: int) -> str:
        status, code = EXPECTED[kind]
        try:
            body = response.json()
        except ValueError:
            return f"{kind}: status {response.status_code}, body is not JSON: {response.text[:120]!r}"
        if kind in GOOD and response.status_code == 429:
            return "" if body.get("error", {}).get("code") == "server_busy" else f"{kind}: 429 without server_busy"
        if response.status_code != status:
            return f"{kind}: status {response.status_code}, expected {status}: {json.dumps(body)[:200]}"
        if code is not None:
            error = body.get("error") if isinstance(body, dict) else None
            if not isinstance(error, dict) or error.get("code") != code or not error.get("message"):
                return f"{kind}: error {json.dumps(body)[:200]}, expected code {code}"
            return ""
        usage = body.get("usage") or {}
        if usage.get("prompt_tokens") != expected_tokens:
            return f"{kind}: prompt_tokens {usage.get('prompt_tokens')} != {expected_tokens} (not its own answer?)"
        if not 0 <= usage.get("completion_tokens", -1) <= max_tokens:
            return f"{kind}: completion_tokens {usage.get('completion_tokens')} over max_tokens {max_tokens}"
        return ""

    def _check_stream(self, kind: str, response: requests.Response, expected_tokens: int | None,
                      max_tokens: int) -> str:
        events: list[Any] = []
        for line in response.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                data = line[len("data: "):]
                if data == "[DONE]":
                    events.append(data)
                    break
                events.append(json.loads(data))
        if not events or events[-1] != "[DONE]":
            return f"{kind}: stream without [DONE] ({len(events)} events)"
        last = events[-2] if len(events) >= 2 else {}
        if isinstance(last, dict) and "error" in last:
            return f"{kind}: stream ended with an error event {json.dumps(last)[:200]}"
        usage = last.get("usage") or {}
        if usage.get("prompt_tokens") != expected_tokens:
            return f"{kind}: stream prompt_tokens {usage.get('prompt_tokens')} != {expected_tokens}"
        if not 0 <= usage.get("completion_tokens", -1) <= max_tokens:
            return f"{kind}: stream completion_tokens {usage.get('completion_tokens')} over {max_tokens}"
        return ""


# ------------------------------------------------------------------------------------------------ the soak
def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (the HTTP servers and model workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def server_request_counts(url: str) -> dict[str, int]:
    """forge_requests_total by "endpoint status", for the /v1 endpoints."""
    counts: dict[str, int] = {}
    text = requests.get(f"{url}/metrics", timeout=30).text
    for line in text.splitlines():
        if not line.startswith("forge_requests_total{"):
            continue
        labels, value = line[len("forge_requests_total{"):].rsplit("}", 1)
        parts = dict(item.split("=", 1) for item in labels.split(","))
        endpoint, status = parts["endpoint"].strip('"'), parts["status"].strip('"')
        if endpoint.startswith("/v1/"):
            counts[f"{endpoint} {status}"] = counts.get(f"{endpoint} {status}", 0) + int(float(value))
    return counts


def run_soak(url: str, server_pid: int, api_key: str, limits: Limits, tokenizer: Any, *, duration: float,
             clients: int, max_requests: int | None = None, seed: int = 0,
             alive: Callable[[], bool] = lambda: True) -> SoakReport:
    """Send the mixed load from `clients` threads until `duration` seconds or `max_requests` requests."""
    report = SoakReport()
    before = server_request_counts(url)
    kinds, weights = list(MIX), list(MIX.values())
    lock = threading.Lock()
    sent = [0]
    stop = threading.Event()
    started = time.monotonic()

    def take_ticket() -> bool:
        with lock:
            if stop.is_set() or (max_requests is not None and sent[0] >= max_requests) \
                    or time.monotonic() - started >= duration:
                return False
            sent[0] += 1
            return True

    def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        client = Client(url, api_key, limits, tokenizer, rng)
        while take_ticket():
            outcome = client.send(rng.choices(kinds, weights)[0])
            with lock:
                report.outcomes.append(outcome)

    def sample_memory() -> None:
        while not stop.is_set():
            report.rss.append((time.monotonic() - started, tree_rss(server_pid)))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=client_loop, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.seconds = time.monotonic() - started
    stop.set()
    sampler.join()
    report.rss.append((report.seconds, tree_rss(server_pid)))
    report.alive = alive()
    time.sleep(0.5)  # the server counts a request just after its last byte is sent
    after = server_request_counts(url) if report.alive else {}
    report.server_counts = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
    report.problems = check(report)
    return report


def check(report: SoakReport) -> list[str]:
    """Every problem of the soak, one line each; empty when everything held."""
    problems = [o.problem for o in report.outcomes if o.problem]
    if not report.alive:
        problems.append("the server process died")
    ids = Counter(o.request_id for o in report.outcomes)
    problems += [f"request {i} answered {n} times" for i, n in ids.items() if n != 1]
    problems += [f"{o.kind}: server error {o.status}" for o in report.outcomes if o.status >= 500]
    seen = Counter(f"{o.endpoint} {o.status}" for o in report.outcomes
                   if o.endpoint.startswith("/v1/") and o.status and o.kind != "no_such_endpoint")
    if report.alive and dict(seen) != report.server_counts:
        problems.append(f"the server counted {report.server_counts}, the clients saw {dict(seen)}")
    warm = [b for t, b in report.rss if t >= min(10.0, report.seconds / 5)]
    if len(warm) >= 2 and warm[-1] > warm[0] * 1.25 + 64 * 2**20:
        problems.append(f"server memory grew from {_mib(warm[0])} MiB to {_mib(warm[-1])} MiB")
    return problems


def markdown(summary: dict[str, Any], args: argparse.Namespace, machine: str) -> str:
    statuses = ", ".join(f"{status}: {n:,}" for status, n in summary["by_status"].items())
    return "\n".join([
        f"`python benchmarks/serve_soak.py --duration {args.duration:g} --clients {args.clients}` on {machine}, "
        f"{_dt.date.today().isoformat()}.",
        "",
        "| requests | seconds | requests/s | by status | good answered | good p50 / p99 (s) | RSS start / max / end (MiB) | problems |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {summary['requests']:,} | {summary['seconds']:.0f} | {summary['requests_per_second']:.1f} | {statuses} "
        f"| {summary['good_answered']:,} | {summary['latency_good_p50_s']:.2f} / {summary['latency_good_p99_s']:.2f} "
        f"| {summary['rss_start_mib']:.0f} / {summary['rss_max_mib']:.0f} / {summary['rss_end_mib']:.0f} "
        f"| {summary['problem_count']} |",
    ])


# ------------------------------------------------------------------------------------------------ the script
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, help="serve this run instead of making one (tiny model, untrained LoRA)")
    p.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients")
    p.add_argument("--requests", type=int, default=None, help="stop after this many requests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-threads", type=int, default=1, help="torch threads of the model worker (OMP_NUM_THREADS)")
    p.add_argument("--json", type=Path, help="also write the JSON report here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "tests" / "serve"))
    from transformers import AutoTokenizer

    from serve_support import API_KEY, SERVING, ServerProcess, build_run_dir, free_port

    work = Path(tempfile.mkdtemp(prefix="forge-soak-"))
    env = {"FORGE_CACHE": os.environ.get("FORGE_CACHE", str(work / "cache")), "OMP_NUM_THREADS": str(args.cpu_threads)}
    os.environ.setdefault("FORGE_CACHE", env["FORGE_CACHE"])
    run_dir = args.run_dir
    if run_dir is None:
        from forge.model.tiny import tiny_llama

        base = tiny_llama({"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128,
                           "vocab_size": 2048})
        run_dir = build_run_dir(Path(base), work / "runs")
    server = ServerProcess(run_dir, free_port(), work / "server.log", env=env)
    try:
        server.wait_ready()
        limits = Limits(SERVING["max_new_tokens"], SERVING["max_input_tokens"], SERVING["max_request_bytes"])
        tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
        report = run_soak(server.url, server.process.pid, API_KEY, limits, tokenizer, duration=args.duration,
                          clients=args.clients, max_requests=args.requests, seed=args.seed,
                          alive=lambda: server.process.poll() is None)
    finally:
        code = server.stop()
    summary = report.summary()
    summary["server_exit_code"] = code
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}, " \
              f"Python {platform.python_version()}"
    print(json.dumps(summary, indent=2))
    print()
    print(markdown(summary, args, machine))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if summary["problem_count"] or code != 0 else 0


if __name__ == "__main__":
    sys.exit(main())

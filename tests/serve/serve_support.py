"""Helpers of the serving tests: a run directory with a LoRA adapter on the tiny LLaMA (the quickstart recipe's
settings), and a `forge serve` subprocess on a free 127.0.0.1 port."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
API_KEY_ENV = "FORGE_TEST_SERVE_KEY"
API_KEY = "test-key-0123456789"
SERVING = {"max_batch_size": 8, "batch_timeout": 0.01, "max_new_tokens": 64, "max_input_tokens": 256,
           "max_pending_requests": 32, "max_batch_inputs": 16, "max_request_bytes": 65536, "timeout": 60,
           "api_key_env": API_KEY_ENV}


def build_run_dir(base_dir: Path, output_dir: Path, serving: dict | None = None, name: str = "quickstart") -> Path:
    """A finished-looking run of recipes/quickstart.yaml on the given base model: recipe.yaml, summary.json and
    adapter/ (an untrained LoRA adapter with the quickstart's LoRA settings, and the tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.model.load import attach_lora
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    overrides = [f"model.name_or_path={base_dir}", f"run.output_dir={output_dir}", f"run.name={name}"]
    overrides += [f"serving.{key}={value}" for key, value in {**SERVING, **(serving or {})}.items()]
    resolved = resolve(REPO / "recipes" / "quickstart.yaml", overrides)
    plan = compile_plan(resolved.recipe)
    run_dir = Path(plan.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = attach_lora(AutoModelForCausalLM.from_pretrained(base_dir), plan.lora, [])
    model.save_pretrained(run_dir / "adapter")
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(run_dir / "adapter")
    (run_dir / "recipe.yaml").write_text(resolved.yaml_text, encoding="utf-8")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "steps": 0}), encoding="utf-8")
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`forge serve` in its own process group; stop() sends SIGTERM, then SIGKILL to the group if needed."""

    def __init__(self, run_dir: Path, port: int, log: Path, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        environment = {**os.environ, API_KEY_ENV: API_KEY, "PYTHONUNBUFFERED": "1", **(env or {})}
        command = [sys.executable, "-m", "forge", "serve", str(run_dir), *args, "--port", str(port)]
        self.process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=log.open("w"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"forge serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"forge serve did not become healthy in {timeout}s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # anything of the group still alive (a worker the server did not stop) goes too
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        return self.process.returncode


def headers(key: str | None = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def sse_events(response: requests.Response) -> list[object]:
    """The data of a server-sent event stream, JSON-decoded, up to [DONE] (which ends the list)."""
    events: list[object] = []
    for line in response.iter_lines(decode_unicode=True):
        if not line or not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            events.append("[DONE]")
            break
        events.append(json.loads(data))
    return events

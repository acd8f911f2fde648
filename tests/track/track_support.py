"""Helpers for tracking tests: a real `mlflow server` on 127.0.0.1 that a test can kill and start again on the
same port and database, a free port, and tests/train/harness.py (tiny training runs on fake data)."""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path
from typing import Any

TRAIN_TESTS = Path(__file__).resolve().parents[1] / "train"


def harness() -> types.ModuleType:
    """tests/train/harness.py, imported by path (it is not a package)."""
    if "harness" in sys.modules:
        return sys.modules["harness"]
    spec = importlib.util.spec_from_file_location("harness", TRAIN_TESTS / "harness.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["harness"] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """`mlflow server` with a SQLite backend and proxied artifacts in `folder`, in its own process group."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                   "--artifacts-destination", str(self.folder / "artifacts"), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.starts += 1
        log = open(self.folder / f"server-{self.starts}.log", "wb")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"mlflow server did not answer in {timeout:.0f}s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """The server goes away at once (SIGKILL to its process group), as a crashed host would."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None
        deadline = time.monotonic() + 30
        while self.healthy() and time.monotonic() < deadline:  # a worker may outlive its parent briefly
            time.sleep(0.1)

    def log_tail(self) -> str:
        path = self.folder / f"server-{self.starts}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def train(recipe: Path, *overrides: str, callbacks: list[Any] | None = None) -> tuple[dict[str, Any], Path, Any]:
    """A tiny training run of `recipe` on fake data (tests/train/harness.py): (summary, run_dir, resolved)."""
    import pytest

    import forge.train.run

    h = harness()
    resolved, plan = h.prepare(recipe, *overrides)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forge.train.run, "load_data", h.fake_bundle)
        summary = forge.train.run.run_recipe(resolved, plan, resume="never", progress=False,
                                             callbacks=callbacks or [])
    return summary, Path(plan.run_dir).resolve(), resolved


def child_recipe(folder: Path, texts: list[str], model: Path, name: str, tracking: str) -> Path:
    """`<name>.yaml` that extends the harness recipe (`base.yaml`) and sets the run name, a description and
    the tracking section (YAML flow mapping text), so the run has a parent chain."""
    harness().write_recipe(folder, texts, model, name="base")
    path = folder / f"{name}.yaml"
    path.write_text(f"extends: base.yaml\nrun: {{name: {name}, description: 'LoRA on fake genomics texts'}}\n"
                    f"training: {{max_steps: 8}}\ntracking: {tracking}\n")
    return path

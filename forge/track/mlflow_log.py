"""Log a run to MLflow: the flattened recipe as parameters, recipe.yaml and plan.json as artifacts, metrics at
every logging step, the adapter at the end.

The default store is a SQLite file next to the runs (`sqlite:///<output_dir>/mlflow.db`), artifacts beside
it in `mlartifacts/`. Tracking never stops training: when MLflow fails (a server that is down, a locked
database), the tracker switches to writing what it would have logged to `<run_dir>/mlflow_pending.jsonl`
and the summary says so. MLflow is imported only here, only when tracking is on. Rank 0 only.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

PENDING_FILE = "mlflow_pending.jsonl"
MAX_PARAM_CHARS = 6000
BATCH = 100  # MLflow's limit of parameters per log_batch call
# A dead server must cost seconds, not the minutes of MLflow's default retry schedule.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def default_uri(output_dir: str | os.PathLike[str]) -> str:
    """The local SQLite store inside the output folder (absolute)."""
    return f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}; lists become JSON text, long values are cut to MLflow's limit."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    text = data if isinstance(data, str) else json.dumps(data)
    out[prefix.rstrip(".")] = text[:MAX_PARAM_CHARS]
    return out


class MlflowTracker:
    """One MLflow run for one Forge run; after the first failure everything goes to the pending file."""

    def __init__(self, uri: str, experiment: str, run_dir: Path, *, artifact_root: Path | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.run_dir = Path(run_dir)
        self.artifact_root = artifact_root
        self.client: Any = None
        self.run_id: str | None = None
        self.status = "ok"
        self.error: str | None = None

    @property
    def pending_path(self) -> Path:
        return self.run_dir / PENDING_FILE

    def start(self, run_name: str, tags: Mapping[str, str], resume_run_id: str | None = None) -> None:
        """Open (or, when resuming, reopen) the MLflow run."""
        self._guard("start", {"run_name": run_name, "tags": dict(tags)},
                    lambda: self._start(run_name, tags, resume_run_id))

    def _start(self, run_name: str, tags: Mapping[str, str], resume_run_id: str | None) -> None:
        if self.uri.startswith(("http://", "https://")):
            for key, value in HTTP_DEFAULTS.items():
                os.environ.setdefault(key, value)
            _check_server(self.uri)
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        if resume_run_id:
            try:
                self.client.update_run(resume_run_id, status="RUNNING")
                self.run_id = resume_run_id
                return
            except Exception:
                pass  # the old run is gone: start a new one
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            location = self.artifact_root.resolve().as_uri() if self.artifact_root is not None else None
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        self.run_id = run.info.run_id

    def log_params(self, params: Mapping[str, str]) -> None:
        def call() -> None:
            from mlflow.entities import Param

            items = [Param(k, v) for k, v in params.items()]
            for i in range(0, len(items), BATCH):
                self.client.log_batch(self.run_id, params=items[i:i + BATCH])

        self._guard("params", dict(params), call)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        def call() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

        self._guard("metrics", {"step": step, "metrics": dict(metrics)}, call)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        def call() -> None:
            if Path(path).is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=artifact_path or Path(path).name)
            else:
                self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)

        self._guard("artifact", {"path": str(path), "artifact_path": artifact_path}, call)

    def finish(self, status: str) -> None:
        """Close the run: FINISHED for a completed or early-stopped run, KILLED for interrupted, else FAILED."""
        state = {"completed": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED")
        self._guard("finish", {"status": state}, lambda: self.client.set_terminated(self.run_id, state))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "uri": self.uri, "experiment": self.experiment,
                               "run_id": self.run_id}
        if self.status == "pending":
            out.update(error=self.error, pending_file=str(self.pending_path))
        return out

    def _guard(self, kind: str, payload: dict[str, Any], call: Any) -> None:
        if self.status == "ok":
            try:
                call()
                return
            except Exception as e:  # tracking must never stop training
                self.status = "pending"
                lines = str(e).strip().splitlines()
                self.error = f"{type(e).__name__}: {lines[0] if lines else ''}"
                print(f"forge: MLflow tracking failed ({self.error}); training goes on and what would have been "
                      f"logged is kept in {self.pending_path}", flush=True)
        line = json.dumps({"type": kind, "time": time.time(), **payload}, default=str) + "\n"
        with open(self.pending_path, "a", encoding="utf-8") as f:
            f.write(line)


def _check_server(uri: str, timeout: float = 3.0) -> None:
    """Fail fast when a tracking server does not answer its health check."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 400:
                raise ConnectionError(f"tracking server {uri} answered {response.status}")
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"tracking server {uri} is unreachable: {getattr(e, 'reason', e)}") from None


def start_tracking(tracking: Mapping[str, Any], *, output_dir: str, run_name: str, run_dir: Path,
                   resume_run_id: str | None = None) -> MlflowTracker | None:
    """A started tracker for the recipe's `tracking` section, or None when tracking is off."""
    if not tracking.get("enabled", True):
        return None
    uri = tracking.get("uri") or default_uri(output_dir)
    artifact_root = Path(output_dir).resolve() / "mlartifacts" if not tracking.get("uri") else None
    tracker = MlflowTracker(uri, tracking.get("experiment", "forge"), run_dir, artifact_root=artifact_root)
    tags = {"forge.run_dir": str(run_dir), **dict(tracking.get("tags") or {})}
    tracker.start(tracking.get("run_name") or run_name, tags, resume_run_id)
    return tracker

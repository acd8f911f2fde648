"""Log a run to MLflow through `MlflowClient`: parameters, tags, metrics at every logging step, artifacts, the
adapter and, when asked, a model-registry version.

The default store is a SQLite file next to the runs (`sqlite:///<output_dir>/mlflow.db`), artifacts beside
it in `mlartifacts/`. Tracking never stops training: when MLflow fails (a server that went away, a locked
database), every call from then on is kept in `<run_dir>/mlflow_pending.jsonl`; every `retry_seconds` the
tracker asks the server again and, once it answers, sends what it kept, in order, with the original
timestamps. `finish` tries once more; what is still unsent then stays on disk for `forge runs sync RUN_DIR`.
The summary says which of these happened. MLflow is imported only here, only when tracking is on. Rank 0 only.

Forge writes these calls itself rather than using transformers' MLflowCallback (autologging) because the
callback drops metrics that fail to send, and the fluent API keeps a process-wide active run.
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from forge.track.pending import PENDING_FILE, PendingLog  # noqa: F401 - PENDING_FILE is part of the API

MAX_PARAM_CHARS = 6000
BATCH = 100  # MLflow's limit of parameters per log_batch call
# A dead server must cost seconds, not the minutes of MLflow's default retry schedule.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
RUN_STATES = {"completed": "FINISHED", "stopped": "FINISHED", "interrupted": "KILLED"}


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


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_server(uri: str, timeout: float = 3.0) -> None:
    """Fail fast when a tracking server does not answer its health check (a no-op for local stores)."""
    if not is_http(uri):
        return
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            if response.status >= 400:
                raise ConnectionError(f"tracking server {uri} answered {response.status}")
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"tracking server {uri} is unreachable: {getattr(e, 'reason', e)}") from None


class Unsendable(Exception):
    """A kept call that can never be sent (its file is gone)."""


def rejected(error: BaseException) -> bool:
    """MLflow refused the call itself (a bad or conflicting value, a run that is gone), or the call cannot be
    made at all: sending it again cannot help. Anything else (no connection, a 5xx, a locked database) is an
    outage worth waiting out."""
    if isinstance(error, Unsendable):
        return True
    from mlflow.exceptions import MlflowException

    return isinstance(error, MlflowException) and error.get_http_status_code() in (400, 404)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


class MlflowTracker:
    """One MLflow run for one Forge run. Every call goes through `_send`: straight to MLflow while it answers,
    to the pending file (and later MLflow) while it does not."""

    def __init__(self, uri: str, experiment: str, run_dir: Path, *, artifact_root: Path | None = None,
                 retry_seconds: float = 30.0, experiment_description: str = "",
                 experiment_tags: Mapping[str, str] | None = None, register_model: str | None = None) -> None:
        self.uri = uri
        self.experiment = experiment
        self.run_dir = Path(run_dir)
        self.artifact_root = artifact_root
        self.retry_seconds = retry_seconds
        self.experiment_description = experiment_description
        self.experiment_tags = dict(experiment_tags or {})
        self.register_model = register_model
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.status = "ok"  # ok, pending (calls kept on disk), recovered (kept calls were all sent later)
        self.error: str | None = None
        self.outages: list[dict[str, Any]] = []
        self.kept = 0  # calls written to the pending file in this session
        self.sent_later = 0  # calls sent from the pending file
        self.rejections: list[str] = []
        self.model_version: dict[str, str] | None = None
        self.pending = PendingLog(self.run_dir)
        self._buffering = False
        self._next_try = 0.0

    @property
    def pending_path(self) -> Path:
        return self.pending.path

    # ------------------------------------------------------------------ what run.py and metadata.py call
    def start(self, run_name: str, tags: Mapping[str, str], resume_run_id: str | None = None) -> None:
        """Open (or, when resuming, reopen) the MLflow run; calls a previous session kept are sent first."""
        earlier = self.pending.has_unsent()  # an earlier session of this run directory ended with MLflow away
        if earlier:
            self._buffering = True
            self.status = "pending"
            self.outages.append({"since": _iso(time.time()), "until": None, "error": "kept by an earlier session"})
        self._send({"type": "start", "run_name": run_name, "tags": dict(tags), "resume_run_id": resume_run_id})
        if earlier:
            self.retry(force=True)

    def log_params(self, params: Mapping[str, str]) -> None:
        self._send({"type": "params", "params": dict(params)})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._send({"type": "tags", "tags": {k: str(v) for k, v in tags.items()}})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._send({"type": "metrics", "step": step, "metrics": {k: float(v) for k, v in metrics.items()}})

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self._send({"type": "artifact", "path": str(path), "artifact_path": artifact_path})

    def log_adapter(self, path: Path, log_files: bool = True, results: Mapping[str, float] | None = None) -> None:
        """The trained adapter (or full model) folder as an artifact, and a registry version when the recipe
        names one (tracking.register_model; it needs the files, so it implies log_files), tagged with results
        (`eval.<name>`; `forge eval` adds its own to the same version)."""
        if log_files or self.register_model:
            self.log_artifact(path)
        if self.register_model:
            self._send({"type": "register", "name": self.register_model, "artifact_path": Path(path).name,
                        "results": {k: float(v) for k, v in (results or {}).items()}})

    def finish(self, status: str) -> None:
        """Close the run: FINISHED for a completed or early-stopped run, KILLED for interrupted, else FAILED.
        Calls still kept get one more try; what cannot be sent stays in the pending file."""
        self._send({"type": "finish", "status": RUN_STATES.get(status, "FAILED")})
        if self._buffering:
            self.retry(force=True)

    def retry(self, force: bool = False) -> bool:
        """Send the kept calls if the server answers (at most every retry_seconds unless forced); True when
        nothing is left to send."""
        if not self._buffering:
            return True
        if not force and time.monotonic() < self._next_try:
            return False
        self._next_try = time.monotonic() + self.retry_seconds
        try:
            check_server(self.uri, timeout=2.0)
        except ConnectionError as e:
            self.error = _one_line(e)
            return False
        sent_before = self.sent_later
        unsent = list(self.pending.unsent())
        self.client = self.client or _client(self.uri)
        last = unsent[-1][0] if unsent else -1
        try:
            if self.run_id is None:
                # the newest start carries this session's run name and resume id
                self._open(next(e for _, e in reversed(unsent) if e["type"] == "start"))
        except StopIteration:
            self.error = "no MLflow run to send the kept calls to"
            return False
        except Exception as e:  # noqa: BLE001
            self.error = _one_line(e)
            return False
        for index, entry in unsent:
            try:
                # a finish that is not the last call closed an earlier session of a resumed run: skip it
                if entry["type"] != "finish" or index == last:
                    self._apply(entry)
            except Exception as e:  # noqa: BLE001 - tracking must never stop training
                if not rejected(e):
                    self.error = _one_line(e)
                    return False
                self._reject(entry, e)
            self.pending.mark_sent(index + 1)
            self.sent_later += 1
        self.pending.clear()
        self._buffering = False
        self.status = "recovered"
        outage = self.outages[-1]
        outage["until"] = _iso(time.time())
        print(f"forge: MLflow answers again; sent the {self.sent_later - sent_before} calls kept since "
              f"{outage['since']} to {self.uri}", flush=True)
        return True

    def send_kept(self, run_id: str | None, outages: list[dict[str, Any]] | None = None) -> bool:
        """Send the pending file an earlier process left behind (`forge runs sync`); True when all of it went."""
        self.run_id = run_id
        self._buffering = True
        self.status = "pending"
        self.outages = list(outages or []) or [{"since": None, "until": None, "error": "kept by an earlier run"}]
        return self.retry(force=True)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "uri": self.uri, "experiment": self.experiment,
                               "run_id": self.run_id}
        if self.outages:
            out.update(outages=self.outages, kept_locally=self.kept, sent_later=self.sent_later)
        if self.status == "pending":
            out.update(error=self.error, pending_file=str(self.pending_path),
                       hint=f"forge runs sync {self.run_dir} sends them once the tracking store answers")
        if self.rejections:
            out["rejected"] = self.rejections
        if self.model_version:
            out["model_version"] = self.model_version
        return out

    # ---------------------------------------------------------------------------------------- sending
    def _send(self, entry: dict[str, Any]) -> None:
        entry.setdefault("time", time.time())
        if not self._buffering:
            try:
                self._apply(entry)
                return
            except Exception as e:  # noqa: BLE001 - tracking must never stop training
                if rejected(e):
                    self._reject(entry, e)
                    return
                self._went_away(e)
        self.pending.append(entry)
        self.kept += 1
        if entry["type"] not in ("start", "finish"):
            self.retry()

    def _went_away(self, error: BaseException) -> None:
        self._buffering = True
        self.status = "pending"
        self.error = _one_line(error)
        self.outages.append({"since": _iso(time.time()), "until": None, "error": self.error})
        self._next_try = time.monotonic() + self.retry_seconds
        print(f"forge: MLflow tracking failed ({self.error}); training goes on, what would have been logged is "
              f"kept in {self.pending_path} and sent when {self.uri} answers again", flush=True)

    def _reject(self, entry: dict[str, Any], error: BaseException) -> None:
        message = f"{entry['type']}: {_one_line(error)}"
        self.rejections.append(message)
        print(f"forge: MLflow refused a {entry['type']} call ({_one_line(error)}); training goes on", flush=True)

    def _apply(self, entry: dict[str, Any]) -> None:
        kind = entry["type"]
        if kind == "start":
            self._open(entry)
            return
        if self.run_id is None:
            raise ConnectionError("the MLflow run is not open yet")
        handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "params": self._apply_params, "tags": self._apply_tags, "metrics": self._apply_metrics,
            "artifact": self._apply_artifact, "register": self._apply_register, "finish": self._apply_finish}
        handlers[kind](entry)

    def _open(self, entry: dict[str, Any]) -> None:
        if self.run_id is not None:  # a kept start, replayed after the run was opened
            return
        check_server(self.uri)
        self.client = self.client or _client(self.uri)
        self.experiment_id = self._experiment()
        resume = entry.get("resume_run_id")
        if resume:
            try:
                self.client.update_run(resume, status="RUNNING")
                self.run_id = resume
                return
            except Exception as e:  # noqa: BLE001
                if not rejected(e):
                    raise
                # the old run is gone: start a new one
        run = self.client.create_run(self.experiment_id, run_name=entry["run_name"], tags=entry["tags"])
        self.run_id = run.info.run_id

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            location = self.artifact_root.resolve().as_uri() if self.artifact_root is not None else None
            tags = dict(self.experiment_tags)
            if self.experiment_description:
                tags["mlflow.note.content"] = self.experiment_description
            return self.client.create_experiment(self.experiment, artifact_location=location, tags=tags)
        wanted = dict(self.experiment_tags)
        if self.experiment_description:
            wanted["mlflow.note.content"] = self.experiment_description
        for key, value in wanted.items():
            if found.tags.get(key) != value:
                self.client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id

    def _apply_params(self, entry: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in entry["params"].items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + BATCH])

    def _apply_tags(self, entry: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in entry["tags"].items()])

    def _apply_metrics(self, entry: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        # the time the value was measured, so that a replay is identical (MLflow drops exact duplicates)
        stamp = int(entry["time"] * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), stamp, int(entry["step"]))
                                                    for k, v in entry["metrics"].items()])

    def _apply_artifact(self, entry: dict[str, Any]) -> None:
        path = Path(entry["path"])
        if not path.exists():
            raise Unsendable(f"{path} is gone")
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path=entry.get("artifact_path") or path.name)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path=entry.get("artifact_path"))

    def _apply_register(self, entry: dict[str, Any]) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        try:
            self.client.create_registered_model(entry["name"])
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = RunsArtifactRepository.get_underlying_uri(f"runs:/{self.run_id}/{entry['artifact_path']}",
                                                           tracking_uri=self.uri)
        from forge.track.registry import results_description, results_tags

        results = entry.get("results") or {}
        version = self.client.create_model_version(
            entry["name"], source, run_id=self.run_id,
            tags={"forge.run_dir": str(self.run_dir), **results_tags(results)},
            description=results_description(self.run_dir.name, results), await_creation_for=0)
        self.model_version = {"name": version.name, "version": str(version.version), "source": source}
        self.client.set_tag(self.run_id, "forge.registered_model", f"{version.name}/{version.version}")

    def _apply_finish(self, entry: dict[str, Any]) -> None:
        end = int(entry["time"] * 1000)
        self.client.set_terminated(self.run_id, entry["status"], end_time=end)


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def start_tracking(tracking: Mapping[str, Any], *, output_dir: str, run_name: str, run_dir: Path,
                   resume_run_id: str | None = None, tags: Mapping[str, str] | None = None) -> MlflowTracker | None:
    """A started tracker for the recipe's `tracking` section, or None when tracking is off."""
    if not tracking.get("enabled", True):
        return None
    uri = tracking.get("uri") or default_uri(output_dir)
    artifact_root = Path(output_dir).resolve() / "mlartifacts" if not tracking.get("uri") else None
    tracker = MlflowTracker(uri, tracking.get("experiment", "forge"), run_dir, artifact_root=artifact_root,
                            retry_seconds=float(tracking.get("retry_seconds", 30.0)),
                            experiment_description=tracking.get("experiment_description") or "",
                            experiment_tags=tracking.get("experiment_tags") or {},
                            register_model=tracking.get("register_model"))
    all_tags = {"forge.run_dir": str(run_dir), **dict(tags or {}), **dict(tracking.get("tags") or {})}
    tracker.start(tracking.get("run_name") or run_name, all_tags, resume_run_id)
    return tracker



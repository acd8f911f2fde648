"""Log an evaluation to the MLflow run of the training run it evaluates (`summary.json`'s mlflow_run_id):
metrics as `eval/<metric>` (and `eval/<metric>_baseline`), the report and plots as artifacts under `eval/`.

Evaluation never fails because of tracking: an unreachable store, a missing run or any MLflow error is a
warning, and the status is returned for the report.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def tracking_target(run_dir: Path, recipe: Any) -> tuple[str | None, str | None]:
    """(tracking URI, MLflow run id) of a training run, from its summary.json; (None, None) when it has none."""
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    run_id = summary.get("mlflow_run_id")
    if not run_id or not recipe.tracking.enabled:
        return None, None
    uri = (summary.get("tracking") or {}).get("uri") or recipe.tracking.uri
    if not uri:
        from forge.track.mlflow_log import default_uri

        uri = default_uri(recipe.run.output_dir)
    return uri, str(run_id)


def log_report(uri: str, run_id: str, report: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """Log metrics and the eval folder to the run; returns {"status": "logged" | "failed", ...}."""
    try:
        _check_reachable(uri)
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        client = MlflowClient(tracking_uri=uri)
        client.get_run(run_id)  # fails fast when the run is not in this store
        now = int(time.time() * 1000)
        values: list[Metric] = [Metric("eval/gates_passed", float(bool(report.get("gates_passed"))), now, 0)]
        for name, entry in report.get("metrics", {}).items():
            for side, suffix in (("tuned", ""), ("baseline", "_baseline")):
                if isinstance(entry.get(side), (int, float)):
                    values.append(Metric(f"eval/{name}{suffix}", float(entry[side]), now, 0))
        client.log_batch(run_id, metrics=values)
        source = (report.get("data") or {}).get("source")
        if source:  # what the eval/ metrics were measured on (forge runs list names its columns by it)
            client.set_tag(run_id, "forge.eval_data", str(source))
        client.log_artifacts(run_id, str(folder), artifact_path="eval")
        from forge.track.registry import tag_version_results

        tuned = {name: float(entry["tuned"]) for name, entry in report.get("metrics", {}).items()
                 if isinstance(entry.get("tuned"), (int, float))}
        version = tag_version_results(client, run_id, tuned)  # the registered adapter carries its results
        return {"status": "logged", "uri": uri, "run_id": run_id, "metrics": len(values),
                **({"model_version": version} if version else {})}
    except Exception as e:  # tracking must never fail an evaluation
        first = (str(e).strip().splitlines() or [""])[0]
        print(f"forge: could not log the evaluation to MLflow ({type(e).__name__}: {first}); "
              f"the report is in {folder}", file=sys.stderr, flush=True)
        return {"status": "failed", "uri": uri, "run_id": run_id, "error": f"{type(e).__name__}: {first}"}


def _check_reachable(uri: str, timeout: float = 3.0) -> None:
    """A dead server must cost seconds, and a missing SQLite file must not be created empty."""
    from forge.track.mlflow_log import check_server

    check_server(uri, timeout)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise FileNotFoundError(f"the tracking database {path} does not exist")

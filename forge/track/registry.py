"""The MLflow Model Registry: a model version for an adapter or an exported folder, carrying the run's evaluation
results as version tags (`eval.<metric>`) and in its description, so the registry alone says how good it is.

`forge export --register NAME` logs the exported folder to the run's MLflow run and registers it; after
training, `tracking.register_model` registers the adapter (forge/track/mlflow_log.py) and `forge eval` adds its
results to that version (`tag_version_results`).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from forge.track.errors import TrackingError
from forge.track.store import calling, open_client


def results_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    """Version tags for evaluation results: eval.<metric> = value."""
    return {f"eval.{name}": f"{value:.6g}" for name, value in sorted(metrics.items())}


def results_description(run_name: str, metrics: Mapping[str, float]) -> str:
    shown = ", ".join(f"{name} {value:.4g}" for name, value in sorted(metrics.items()))
    return f"Forge run {run_name}" + (f"; evaluation: {shown}" if shown else "; not evaluated")


def run_store(run_dir: Path, recipe: Any, summary: Mapping[str, Any]) -> tuple[str, str]:
    """(tracking URI, MLflow run id) of a finished run; TrackingError when it was not tracked."""
    from forge.track.mlflow_log import default_uri

    run_id = summary.get("mlflow_run_id")
    if not run_id:
        raise TrackingError(f"{run_dir} has no MLflow run (tracking was off), so nothing can be registered",
                            "train with tracking.enabled: true, or export without --register")
    uri = (summary.get("tracking") or {}).get("uri") or recipe.tracking.uri or default_uri(recipe.run.output_dir)
    return str(uri), str(run_id)


def register_folder(run_dir: Path, recipe: Any, summary: Mapping[str, Any], name: str, folder: Path,
                    artifact_path: str, metrics: Mapping[str, float], tags: Mapping[str, str] | None = None
                    ) -> dict[str, str]:
    """Log `folder` to the run's MLflow run under artifact_path and register it as a new version of `name`."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

    uri, run_id = run_store(run_dir, recipe, summary)
    client = open_client(uri)
    with calling("register the model", uri):
        client.get_run(run_id)
        client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)
        try:
            client.create_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = RunsArtifactRepository.get_underlying_uri(f"runs:/{run_id}/{artifact_path}", tracking_uri=uri)
        version = client.create_model_version(
            name, source, run_id=run_id, description=results_description(recipe.run.name, metrics),
            tags={"forge.run_dir": str(run_dir), **results_tags(metrics), **dict(tags or {})}, await_creation_for=0)
        client.set_tag(run_id, "forge.registered_model", f"{version.name}/{version.version}")
    return {"name": version.name, "version": str(version.version), "source": source, "uri": uri}


def tag_version_results(client: Any, run_id: str, metrics: Mapping[str, float]) -> str | None:
    """Add evaluation results to the version the run registered at the end of training (its
    forge.registered_model tag, NAME/VERSION); returns that reference, or None when it registered none."""
    run = client.get_run(run_id)
    ref = run.data.tags.get("forge.registered_model")
    if not ref or "/" not in ref:
        return None
    name, version = ref.rsplit("/", 1)
    for key, value in results_tags(metrics).items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=results_description(run.info.run_name, metrics))
    return ref

"""Logging an evaluation to the training run's MLflow run, and never failing because of tracking."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from forge.evaluate.tracking import log_report, tracking_target

REPORT = {"gates_passed": True,
          "metrics": {"perplexity": {"tuned": 44.0, "baseline": 2100.0}, "gene_f1": {"tuned": 0.5, "baseline": None},
                      "tokens_per_second": {"tuned": 300.0}},
          "data": {"source": "validation split", "documents": 4}}


def recipe(enabled: bool = True, uri: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(tracking=SimpleNamespace(enabled=enabled, uri=uri), run=SimpleNamespace(output_dir="runs"))


def test_metrics_and_artifacts_reach_the_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("forge", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id  # artifacts under tmp_path, not ./mlruns
    run_dir = tmp_path / "run"
    (run_dir / "eval").mkdir(parents=True)
    (run_dir / "eval" / "report.md").write_text("# report\n")
    (run_dir / "summary.json").write_text(json.dumps({"mlflow_run_id": run_id, "tracking": {"uri": uri}}))

    assert tracking_target(run_dir, recipe()) == (uri, run_id)
    assert tracking_target(run_dir, recipe(enabled=False)) == (None, None)
    outcome = log_report(uri, run_id, REPORT, run_dir / "eval")
    # gates_passed + perplexity and its baseline + gene_f1 + tokens_per_second (no baseline values) = 5
    assert outcome == {"status": "logged", "uri": uri, "run_id": run_id, "metrics": 5}
    metrics = client.get_run(run_id).data.metrics
    assert metrics == {"eval/gates_passed": 1.0, "eval/perplexity": 44.0, "eval/perplexity_baseline": 2100.0,
                       "eval/gene_f1": 0.5, "eval/tokens_per_second": 300.0}
    assert [a.path for a in client.list_artifacts(run_id, "eval")] == ["eval/report.md"]
    assert client.get_run(run_id).data.tags["forge.eval_data"] == "validation split"  # names `runs list` columns


def test_an_unreachable_store_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    outcome = log_report(missing, "abc", REPORT, tmp_path)
    assert outcome["status"] == "failed" and "does not exist" in outcome["error"]
    assert not (tmp_path / "nowhere.db").exists()  # a missing store is not created empty
    assert "could not log the evaluation to MLflow" in capsys.readouterr().err
    dead = log_report("http://127.0.0.1:9", "abc", REPORT, tmp_path)  # nothing listens on port 9
    assert dead["status"] == "failed" and "unreachable" in dead["error"]
    assert tracking_target(tmp_path / "no-summary", recipe()) == (None, None)

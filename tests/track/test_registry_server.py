"""The MLflow Model Registry on a real `mlflow server` (SQLite backend, started here): the adapter a run
registers carries its validation loss and, after `forge eval`, its evaluation results; `forge export --register`
adds the exported folder as a new version; all read back through MLflow's own client."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from forge.cli import main
from track_support import MlflowServer, child_recipe, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered_run(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path,
                   genomics_examples: list[str]) -> dict[str, Any]:
    """8 steps logged to the server, the adapter registered as forge-quick."""
    folder = tmp_path_factory.mktemp("registered")
    recipe = child_recipe(folder, genomics_examples, tiny_llama_dir, "registered",
                          f"{{enabled: true, uri: '{server.uri}', experiment: forge-registry, "
                          "register_model: forge-quick}")
    summary, run_dir, resolved = train(recipe)
    assert summary["status"] == "completed"
    return {"summary": summary, "run_dir": run_dir, "resolved": resolved}


def client_for(server: MlflowServer) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.uri)


def test_the_registered_adapter_carries_the_results(registered_run: dict[str, Any], server: MlflowServer,
                                                    tmp_path: Path) -> None:
    from forge.evaluate.tracking import log_report

    summary = registered_run["summary"]
    client = client_for(server)
    version = client.get_model_version("forge-quick", "1")
    assert version.run_id == summary["mlflow_run_id"] and version.source.endswith("/adapter")
    assert version.tags["eval.validation_loss"] == f"{summary['eval']['loss']:.6g}"
    assert "validation_loss" in version.description

    # forge eval's report lands on the same version
    (tmp_path / "report.json").write_text("{}")
    report = {"gates_passed": True, "metrics": {"perplexity": {"tuned": 12.5, "baseline": 300.0},
                                                "gene_f1": {"tuned": 0.25, "baseline": 0.1}}}
    outcome = log_report(server.uri, summary["mlflow_run_id"], report, tmp_path)
    assert outcome["status"] == "logged" and outcome["model_version"] == "forge-quick/1"
    version = client.get_model_version("forge-quick", "1")
    assert version.tags["eval.perplexity"] == "12.5" and version.tags["eval.gene_f1"] == "0.25"
    assert "perplexity 12.5" in version.description


def test_export_register_adds_versions(registered_run: dict[str, Any], server: MlflowServer, tmp_path: Path) -> None:
    summary, run_dir = registered_run["summary"], registered_run["run_dir"]
    assert main(["export", str(run_dir), "--format", "merged", "--register", "forge-quick-merged",
                 "--out", str(tmp_path / "merged")]) == 0
    assert main(["export", str(run_dir), "--format", "gguf", "--dtype", "q8_0", "--register", "forge-quick-merged",
                 "--out", str(tmp_path / "gguf")]) == 0
    client = client_for(server)
    versions = sorted(client.search_model_versions("name='forge-quick-merged'"), key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2"]
    assert [v.tags["forge.export.format"] for v in versions] == ["merged", "gguf"]
    for version in versions:
        assert version.run_id == summary["mlflow_run_id"]
        assert version.tags["eval.validation_loss"] == f"{summary['eval']['loss']:.6g}"
    assert versions[0].source.endswith("export/merged") and versions[1].source.endswith("export/gguf")
    files = {Path(a.path).name for a in client.list_artifacts(summary["mlflow_run_id"], "export/merged")}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    local = client.download_artifacts(summary["mlflow_run_id"], "export/gguf/README.md", str(tmp_path / "dl"))
    assert Path(local).read_text() == (tmp_path / "gguf" / "README.md").read_text()
    assert client.get_run(summary["mlflow_run_id"]).data.tags["forge.registered_model"] == "forge-quick-merged/2"


def test_register_needs_a_tracked_run(registered_run: dict[str, Any], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    untracked = tmp_path / "untracked"
    shutil.copytree(registered_run["run_dir"], untracked)
    summary = json.loads((untracked / "summary.json").read_text())
    summary["mlflow_run_id"] = None
    (untracked / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(["export", str(untracked), "--format", "adapter", "--register", "x", "--out",
                 str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "has no MLflow run (tracking was off)" in lines[0]
    assert not (tmp_path / "out").exists()

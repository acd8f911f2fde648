"""MLflow tracking: the local SQLite default, and a dead server that must not stop anything."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from forge.track.mlflow_log import default_uri, flatten, start_tracking


def test_flatten_makes_dotted_string_params() -> None:
    flat = flatten({"model": {"name": "x", "tiny": {"layers": 2}}, "lora": {"targets": ["q", "v"]}, "n": None,
                    "long": "y" * 7000})
    assert flat == {"model.name": "x", "model.tiny.layers": "2", "lora.targets": '["q", "v"]', "n": "null",
                    "long": "y" * 6000}


def test_default_store_is_sqlite_in_the_output_folder(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text("run: {name: r1}\n")
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    tracker = start_tracking({"enabled": True, "experiment": "forge-tests", "tags": {"team": "genomics"}},
                             output_dir=str(tmp_path / "runs"), run_name="r1", run_dir=run_dir)
    assert tracker is not None and tracker.uri == default_uri(tmp_path / "runs")
    assert tracker.uri == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    tracker.log_params({"training.lr": "0.001", **{f"p{i}": str(i) for i in range(150)}})
    for step in (1, 2, 3):
        tracker.log_metrics({"loss": 3.0 - step}, step)
    tracker.log_artifact(run_dir / "recipe.yaml")
    tracker.log_artifact(run_dir / "adapter")
    tracker.finish("completed")
    assert tracker.status == "ok" and not tracker.pending_path.exists()

    client = MlflowClient(tracking_uri=tracker.uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert run.data.params["training.lr"] == "0.001" and len(run.data.params) == 151
    assert run.data.tags["team"] == "genomics"
    assert [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, "loss")] == [(1, 2.0), (2, 1.0),
                                                                                            (3, 0.0)]
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert artifacts == {"recipe.yaml", "adapter"}
    assert (tmp_path / "runs" / "mlartifacts").is_dir()  # artifacts beside the database, not in ./mlruns

    again = start_tracking({"enabled": True, "experiment": "forge-tests"}, output_dir=str(tmp_path / "runs"),
                           run_name="r1", run_dir=run_dir, resume_run_id=tracker.run_id)
    assert again.run_id == tracker.run_id  # a resumed run continues its MLflow run
    assert client.get_run(tracker.run_id).info.status == "RUNNING"


def test_a_dead_server_sends_everything_to_the_pending_file(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.perf_counter()
    tracker = start_tracking({"enabled": True, "uri": f"http://127.0.0.1:{port}", "experiment": "e"},
                             output_dir=str(tmp_path), run_name="r", run_dir=tmp_path)
    tracker.log_params({"a": "1"})
    tracker.log_metrics({"loss": 1.5}, 7)
    tracker.finish("completed")
    assert time.perf_counter() - started < 10
    assert tracker.status == "pending" and "unreachable" in tracker.error
    lines = [json.loads(line) for line in tracker.pending_path.read_text().splitlines()]
    assert [r["type"] for r in lines] == ["start", "params", "metrics", "finish"]
    assert lines[2]["step"] == 7 and lines[2]["metrics"] == {"loss": 1.5}
    assert tracker.summary()["pending_file"] == str(tracker.pending_path)


def test_tracking_off_starts_nothing(tmp_path: Path) -> None:
    assert start_tracking({"enabled": False}, output_dir=str(tmp_path), run_name="r", run_dir=tmp_path) is None

"""While MLflow is away the tracker keeps every call on disk, and sends them in order, once, when it answers:
later in the same run, at the next session of a resumed run, or after a replay that stopped half-way."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from forge.track.mlflow_log import MlflowTracker, default_uri, start_tracking


class Flaky:
    """An MlflowClient whose calls fail like a server that went away while `down`, or after `budget` calls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.down = False
        self.budget: int | None = None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from mlflow.exceptions import MlflowException

            if self.budget is not None:
                if self.budget <= 0:
                    self.down = True
                self.budget -= 1
            if self.down:
                raise MlflowException("API request to http://tracking/api failed with exception ConnectionRefused")
            return attr(*args, **kwargs)

        return call


@pytest.fixture(autouse=True)
def store(tmp_path: Path, new_store: Callable[[Path], Path]) -> Path:
    return new_store(tmp_path)


def tracker_for(tmp_path: Path, run_dir: Path, resume: str | None = None) -> MlflowTracker:
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = start_tracking({"enabled": True, "experiment": "replay", "retry_seconds": 0},
                             output_dir=str(tmp_path), run_name="r", run_dir=run_dir, resume_run_id=resume)
    assert tracker is not None and tracker.status in ("ok", "recovered")
    tracker.client = Flaky(tracker.client)
    return tracker


def history(tmp_path: Path, run_id: str, key: str = "loss") -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(default_uri(tmp_path)).get_metric_history(run_id, key)]


def test_calls_kept_during_an_outage_are_sent_in_order_when_mlflow_answers(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    tracker = tracker_for(tmp_path, tmp_path / "r")
    tracker.log_params({"optimizer.lr": "0.001"})
    for step in (1, 2):
        tracker.log_metrics({"loss": 10.0 - step}, step)
    tracker.client.down = True
    for step in (3, 4, 5):
        tracker.log_metrics({"loss": 10.0 - step}, step)
    tracker.set_tags({"note": "kept"})
    assert tracker.status == "pending" and tracker.kept == 4
    assert [json.loads(x)["type"] for x in tracker.pending_path.read_text().splitlines()] == ["metrics"] * 3 + ["tags"]
    assert "training goes on" in capsys.readouterr().out

    tracker.client.down = False
    tracker.log_metrics({"loss": 4.0}, 6)  # the next call finds MLflow back and sends what was kept first
    tracker.finish("completed")
    assert history(tmp_path, tracker.run_id) == [(s, 10.0 - s) for s in range(1, 7)]
    summary = tracker.summary()
    assert summary["status"] == "recovered" and summary["kept_locally"] == 5 and summary["sent_later"] == 5
    assert summary["outages"][0]["until"] and "ConnectionRefused" in summary["outages"][0]["error"]
    assert not tracker.pending_path.exists() and "pending_file" not in summary
    assert "MLflow answers again" in capsys.readouterr().out

    from mlflow import MlflowClient

    run = MlflowClient(default_uri(tmp_path)).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["note"] == "kept"


def test_a_replay_that_stops_half_way_resumes_without_sending_twice(tmp_path: Path) -> None:
    tracker = tracker_for(tmp_path, tmp_path / "r")
    tracker.client.down = True
    for step in range(1, 7):
        tracker.log_metrics({"loss": float(step)}, step)
    tracker.client.down, tracker.client.budget = False, 2  # two calls get through, then it is gone again
    assert tracker.retry(force=True) is False
    assert tracker.pending.sent == 2 and tracker.status == "pending"

    tracker.client.budget, tracker.client.down = None, False
    tracker.pending.mark_sent(1)  # as if the process died between sending step 2 and recording it
    tracker.finish("completed")
    assert history(tmp_path, tracker.run_id) == [(s, float(s)) for s in range(1, 7)]  # step 2 once: same stamp
    assert tracker.status == "recovered"


def test_a_resumed_run_sends_what_its_earlier_session_kept(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_dir = tmp_path / "r"
    first = tracker_for(tmp_path, run_dir)
    first.log_metrics({"loss": 1.0}, 1)
    first.client.down = True
    first.log_metrics({"loss": 2.0}, 2)
    first.finish("interrupted")  # Ctrl-C while MLflow was away: the KILLED close is kept too
    assert first.summary()["status"] == "pending" and first.pending_path.exists()

    second = tracker_for(tmp_path, run_dir, resume=first.run_id)
    assert second.run_id == first.run_id and second.status == "recovered"
    client = MlflowClient(default_uri(tmp_path))
    assert client.get_run(first.run_id).info.status == "RUNNING"  # the earlier KILLED close was not replayed
    second.log_metrics({"loss": 3.0}, 3)
    second.finish("completed")
    assert history(tmp_path, first.run_id) == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert client.get_run(first.run_id).info.status == "FINISHED"


def test_a_call_mlflow_refuses_is_reported_and_does_not_hold_up_the_rest(tmp_path: Path) -> None:
    tracker = tracker_for(tmp_path, tmp_path / "r")
    tracker.log_params({"optimizer.lr": "0.001"})
    tracker.log_params({"optimizer.lr": "0.002"})  # MLflow refuses to change a parameter
    tracker.log_metrics({"loss": 1.0}, 1)
    tracker.log_artifact(tmp_path / "missing.txt")
    tracker.finish("completed")
    summary = tracker.summary()
    assert summary["status"] == "ok" and len(summary["rejected"]) == 2
    assert summary["rejected"][0].startswith("params:") and "missing.txt" in summary["rejected"][1]
    assert history(tmp_path, tracker.run_id) == [(1, 1.0)]

"""`forge runs list`, `forge runs show RUN` and `forge runs sync RUN_DIR`: find runs in the MLflow store, print one
run's recipe and results, and send what a run kept on disk while its tracking server was away.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from forge.track.errors import TrackingError
from forge.track.store import calling, experiments, find_run, open_client, resolve_store, search
from forge.track.tables import number, text_table

# the metrics `list` shows, in this order, each named by the data it was measured on: the training loss, the loss
# on the validation split (measured while training), and `forge eval`'s perplexity on the data it evaluated
LIST_METRICS = (("loss", "train loss"), ("eval_loss", "val loss"))
EVAL_DATA_TAG = "forge.eval_data"  # set by `forge eval`: the split (or files) it evaluated on
SPLIT_NAMES = {"validation": "val", "test": "test"}


def eval_split(run: Any) -> str:
    """Short name of the data a run's `forge eval` metrics were measured on: val, test, or data (evaluation.data
    files); from the evaluation's tag, else the recipe's evaluation settings."""
    source = run.data.tags.get(EVAL_DATA_TAG)
    if source is None:
        params = run.data.params
        if params.get("evaluation.data", "null") not in ("null", ""):
            return "data"
        source = f"{params.get('evaluation.split', 'test')} split"
    split = source.removesuffix(" split") if source.endswith(" split") else None
    return SPLIT_NAMES.get(split or "", split or "data")


def list_command(uri: str | None, experiment: str | None, as_json: bool = False) -> int:
    store = resolve_store(uri)
    client = open_client(store)
    with calling("list the runs", store):
        chosen = experiments(client, experiment)
        names = {e.experiment_id: e.name for e in chosen}
        runs = search(client, list(names))
    if as_json:
        print(json.dumps([run_record(r, names.get(r.info.experiment_id, "")) for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs in {store}" + (f" (experiment {experiment})" if experiment else ""))
        return 0
    # one perplexity column per split evaluated on, so that no column mixes a test and a validation figure
    splits = {id(r): eval_split(r) for r in runs}
    ppl_columns = sorted({splits[id(r)] for r in runs if "eval/perplexity" in r.data.metrics},
                         key=["val", "test", "data"].index) or ["test"]
    rows = [[r.info.run_id[:8], r.info.run_name, names.get(r.info.experiment_id, ""), r.info.status,
             when(r.info.start_time), duration(r.info.start_time, r.info.end_time),
             *[number(r.data.metrics.get(key)) for key, _ in LIST_METRICS],
             *[number(r.data.metrics.get("eval/perplexity") if splits[id(r)] == split else None)
               for split in ppl_columns]] for r in runs]
    print(text_table(["run", "name", "experiment", "status", "started", "took", *[h for _, h in LIST_METRICS],
                      *[f"{split} ppl" for split in ppl_columns]], rows))
    print(f"\n{len(runs)} run(s) in {store}; forge runs show RUN, forge runs compare RUN RUN ...")
    return 0


def show_command(uri: str | None, ref: str, as_json: bool = False) -> int:
    store = resolve_store(uri)
    client = open_client(store)
    with calling("read the run", store):
        run = find_run(client, ref, store)
        experiment = client.get_experiment(run.info.experiment_id)
        artifacts = [f"{a.path}/" if a.is_dir else a.path for a in client.list_artifacts(run.info.run_id)]
        recipe_text = artifact_text(client, run.info.run_id, "recipe.yaml")
        ancestors = lineage(client, run)
    record = run_record(run, experiment.name)
    if as_json:
        print(json.dumps({**record, "params": dict(run.data.params), "tags": public_tags(run.data.tags),
                          "artifacts": artifacts, "recipe_yaml": recipe_text, "lineage": ancestors}, indent=2))
        return 0
    print(format_run(run, experiment.name, artifacts, recipe_text, ancestors))
    return 0


def sync_command(run_dir: str) -> int:
    """Send the calls a run kept in its pending file (the server was away at the end of the run)."""
    from forge.track.mlflow_log import MlflowTracker, default_uri
    from forge.track.pending import PendingLog

    folder = Path(run_dir)
    summary_path = folder / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise TrackingError(f"{summary_path} is missing or unreadable", "give the run directory of a forge run") \
            from None
    tracking = summary.get("tracking") or {}
    if not PendingLog(folder).has_unsent():
        print(f"nothing to send: {folder} has no calls kept for MLflow")
        return 0
    if not tracking.get("uri"):
        raise TrackingError(f"{summary_path} does not say which tracking store the run used",
                            "the run was started with tracking off")
    output_dir = folder.resolve().parent
    # the default store keeps artifacts beside its database, as forge run would have
    root = output_dir / "mlartifacts" if tracking["uri"] == default_uri(output_dir) else None
    tracker = MlflowTracker(tracking["uri"], tracking.get("experiment", "forge"), folder, artifact_root=root,
                            retry_seconds=0)
    if not tracker.send_kept(summary.get("mlflow_run_id"), tracking.get("outages")):
        raise TrackingError(f"could not send the kept calls to {tracking['uri']}: {tracker.error}",
                            "run forge runs sync again once the tracking store answers")
    summary.update(mlflow_run_id=tracker.run_id, tracking={**tracking, **tracker.summary(),
                                                           "synced_at": when(time.time() * 1000)})
    summary["tracking"].pop("pending_file", None)
    summary["tracking"].pop("hint", None)
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, summary_path)
    print(f"sent {tracker.sent_later} kept calls to run {tracker.run_id} in {tracking['uri']}")
    return 0


# ---------------------------------------------------------------------------------------------- helpers
def run_record(run: Any, experiment: str) -> dict[str, Any]:
    info, tags = run.info, run.data.tags
    return {"run_id": info.run_id, "name": info.run_name, "experiment": experiment, "status": info.status,
            "start_time": when(info.start_time), "end_time": when(info.end_time),
            "run_dir": tags.get("forge.run_dir"), "recipe_chain": tags.get("forge.recipe.chain"),
            "overrides": tags.get("forge.recipe.overrides"), "git_commit": tags.get("forge.git.commit"),
            "git_dirty": tags.get("forge.git.dirty"), "device": tags.get("forge.device"),
            "registered_model": tags.get("forge.registered_model"), "metrics": dict(run.data.metrics)}


def public_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(tags.items()) if not k.startswith("mlflow.log-model")}


MAX_LINEAGE = 50


def lineage(client: Any, run: Any) -> list[dict[str, str | None]]:
    """The runs this one continued from (model.adapter), parent first: each with its id, name and adapter;
    an ancestor outside this store (or an adapter that no run trained) ends the chain."""
    from mlflow.exceptions import MlflowException

    chain: list[dict[str, str | None]] = []
    tags = run.data.tags
    seen = {run.info.run_id}
    while tags.get("forge.parent.adapter") and len(chain) < MAX_LINEAGE:
        parent_id = tags.get("forge.parent.run_id")
        entry: dict[str, str | None] = {"run_id": parent_id, "name": tags.get("forge.parent.run_name"),
                                        "adapter": tags["forge.parent.adapter"]}
        chain.append(entry)
        if not parent_id or parent_id in seen:
            break
        seen.add(parent_id)
        try:
            parent = client.get_run(parent_id)
        except MlflowException:
            break
        entry["name"] = parent.info.run_name
        tags = parent.data.tags
    return chain


def format_lineage(chain: list[dict[str, str | None]]) -> str:
    return " <- ".join(f"{e['name'] or '?'} ({e['run_id'][:8]})" if e.get("run_id") else f"adapter {e['adapter']}"
                       for e in chain)


def format_run(run: Any, experiment: str, artifacts: list[str], recipe_text: str | None,
               ancestors: list[dict[str, str | None]] | None = None) -> str:
    info, tags, metrics = run.info, run.data.tags, run.data.metrics
    versions = ", ".join(f"{k.removeprefix('forge.version.')} {v}" for k, v in sorted(tags.items())
                         if k.startswith("forge.version."))
    git = tags.get("forge.git.commit")
    rows = [
        ("run", f"{info.run_id} ({info.run_name})"),
        ("experiment", f"{experiment} (id {info.experiment_id})"),
        ("status", f"{info.status}, started {when(info.start_time)}, took {duration(info.start_time, info.end_time)}"),
        ("run dir", tags.get("forge.run_dir", "-")),
        ("recipe", tags.get("forge.recipe.chain", "-")),
        ("overrides", tags.get("forge.recipe.overrides", "") or "none"),
        ("git", f"{git[:12]}{' (dirty)' if tags.get('forge.git.dirty') == 'true' else ''}"
                f"{' on ' + tags['mlflow.source.git.branch'] if tags.get('mlflow.source.git.branch') else ''}"
         if git else "not in a git repository"),
        ("device", tags.get("forge.device", "-")),
        ("versions", versions or "-"),
        ("registered", tags.get("forge.registered_model", "") or "no"),
    ]
    if ancestors:
        rows.append(("continued from", format_lineage(ancestors)))
    if tags.get("mlflow.note.content"):
        rows.append(("description", tags["mlflow.note.content"]))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    training = [k for k in sorted(metrics) if not k.startswith("eval/")]
    evaluation = [k for k in sorted(metrics) if k.startswith("eval/")]
    for title, keys in (("training metrics (last value)", training), ("evaluation (forge eval)", evaluation)):
        if keys:
            lines += ["", title, text_table(["metric", "value"], [[k, number(metrics[k])] for k in keys])]
    lines += ["", "artifacts: " + (", ".join(artifacts) or "none")]
    if recipe_text:
        lines += ["", "recipe.yaml", recipe_text.rstrip()]
    return "\n".join(lines)


def artifact_text(client: Any, run_id: str, path: str) -> str | None:
    """A small text artifact of the run, or None when it has none."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one small file: no bar
    with tempfile.TemporaryDirectory(prefix="forge-runs-") as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except Exception:  # noqa: BLE001 - a run without the artifact (or an artifact store that is away)
            return None
        return Path(local).read_text(encoding="utf-8", errors="replace")


def when(millis: int | float | None) -> str:
    if not millis:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(millis / 1000))


def duration(start: int | None, end: int | None) -> str:
    if not start or not end:
        return "-"
    seconds = max(0, int((end - start) / 1000))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"

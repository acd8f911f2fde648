"""Find the MLflow store and the runs the `forge runs` verbs are about.

The store is `--uri` (a tracking URI, an output folder holding mlflow.db, or the .db file), else
$MLFLOW_TRACKING_URI, else `runs/mlflow.db` in the working directory (the default of `forge run`).
A run is named by its id, a unique prefix of it (as `forge runs list` prints), or its run name.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from forge.track.errors import StoreUnreachable, UnknownExperiment, UnknownRun
from forge.track.mlflow_log import check_server

DEFAULT_STORE = Path("runs") / "mlflow.db"
STORE_HINT = "pass --uri: a tracking server URL, a sqlite:/// URI, or the output folder of your runs"
PAGE = 1000


def resolve_store(uri: str | None = None) -> str:
    """The tracking URI to read from; a local store that does not exist is an error (never created empty)."""
    given = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not given:
        if DEFAULT_STORE.is_file():
            return f"sqlite:///{DEFAULT_STORE.resolve()}"
        raise StoreUnreachable(f"no MLflow store found: {DEFAULT_STORE} does not exist here", STORE_HINT)
    if given.startswith("sqlite:///"):
        path = Path(given.removeprefix("sqlite:///"))
        if not path.is_file():
            raise StoreUnreachable(f"the tracking database {path} does not exist", STORE_HINT)
        return given
    if re.match(r"^[a-z][a-z0-9+.-]*://", given):
        return given
    path = Path(given)
    if path.is_dir() and (path / "mlflow.db").is_file():
        return f"sqlite:///{(path / 'mlflow.db').resolve()}"
    if path.is_file():
        return f"sqlite:///{path.resolve()}"
    raise StoreUnreachable(f"no MLflow store at {given} (no mlflow.db there)", STORE_HINT)


def open_client(uri: str) -> Any:
    """An MlflowClient for a store that answers."""
    try:
        check_server(uri)
    except ConnectionError as e:
        raise StoreUnreachable(str(e), "start the server, or pass --uri for another store") from None
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@contextmanager
def calling(what: str, uri: str) -> Iterator[None]:
    """Turns an MLflow failure inside the block into a one-line error (a server that went away mid-command)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as e:
        first = (str(e.message).strip().splitlines() or [""])[0][:300]
        raise StoreUnreachable(f"could not {what} from {uri}: {first}",
                               "check that the tracking store answers (forge runs list)") from None


def experiments(client: Any, name: str | None = None) -> list[Any]:
    """Active experiments, or the one named (UnknownExperiment when there is none)."""
    found = list(_pages(lambda token: client.search_experiments(max_results=PAGE, page_token=token)))
    if name is None:
        return found
    chosen = [e for e in found if e.name == name]
    if not chosen:
        names = ", ".join(sorted(e.name for e in found)) or "none"
        raise UnknownExperiment(f"no experiment named {name!r}", f"experiments in this store: {names}")
    return chosen


def search(client: Any, experiment_ids: list[str]) -> list[Any]:
    """Every active run of these experiments, newest first."""
    if not experiment_ids:
        return []
    return list(_pages(lambda token: client.search_runs(experiment_ids, max_results=PAGE, page_token=token,
                                                        order_by=["attributes.start_time DESC"])))


def find_run(client: Any, ref: str, uri: str) -> Any:
    """The run named by a full id, a unique id prefix, or a run name."""
    from mlflow.exceptions import MlflowException

    if re.fullmatch(r"[0-9a-f]{32}", ref):
        try:
            return client.get_run(ref)
        except MlflowException as e:
            if e.get_http_status_code() != 404:
                raise
            raise UnknownRun(f"no run {ref} in {uri}", "forge runs list shows the runs") from None
    runs = search(client, [e.experiment_id for e in experiments(client)])
    matches = [r for r in runs if r.info.run_id.startswith(ref)] if re.fullmatch(r"[0-9a-f]{4,32}", ref) else []
    matches = matches or [r for r in runs if r.info.run_name == ref]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UnknownRun(f"no run {ref!r} in {uri}", "give a run id, a unique prefix of one, or a run name "
                                                     "(forge runs list shows them)")
    ids = ", ".join(r.info.run_id[:12] for r in matches[:6])
    raise UnknownRun(f"{ref!r} matches {len(matches)} runs ({ids}{', ...' if len(matches) > 6 else ''})",
                     "give more of the run id")


def _pages(call: Any) -> Iterator[Any]:
    token = None
    while True:
        page = call(token)
        yield from page
        token = page.token
        if not token:
            return

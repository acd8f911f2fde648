"""Fixtures for tracking tests: empty MLflow SQLite stores (the schema migrations run once per session, each
test gets a copy), and the tiny training run's pieces from tests/train/harness.py."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest


@pytest.fixture(scope="session")
def store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty MLflow SQLite database."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def new_store(store_template: Path) -> Callable[[Path], Path]:
    """Put an empty store at <folder>/mlflow.db (where forge run's default URI points) and return folder."""

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store_template, folder / "mlflow.db")
        return folder

    return make


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["MlflowServer"]:
    """A real `mlflow server` on a free local port for the module's tests, killed after them."""
    from track_support import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    yield server
    server.kill()

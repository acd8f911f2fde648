"""Fixtures of the serving tests: one run directory for the session, and a `forge serve` process of it."""
from __future__ import annotations

from pathlib import Path

import pytest

from serve_support import ServerProcess, build_run_dir, free_port


@pytest.fixture(scope="session")
def serve_run_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run_dir(tiny_llama_dir, tmp_path_factory.mktemp("serve-runs"))


@pytest.fixture(scope="module")
def server(serve_run_dir: Path, forge_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """A running `forge serve` of serve_run_dir on 127.0.0.1 (API key required); stopped at the end."""
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    # one thread: the tiny model gains nothing from more, and the test machine's cores are shared
    process = ServerProcess(serve_run_dir, free_port(), log,
                            env={"FORGE_CACHE": str(forge_cache), "OMP_NUM_THREADS": "1"})
    try:
        process.wait_ready()
        yield process
    finally:
        code = process.stop()
        process.exit_code = code

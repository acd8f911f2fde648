"""A short soak of `forge serve` (benchmarks/serve_soak.py's load): dozens of concurrent clients send mixed good
and bad requests; no crash, no lost, duplicated or swapped answer, the right status for every error, the
server's counters equal the clients', memory flat. 20 seconds (thousands of requests here; at least 500 asked
for); FORGE_SOAK_SECONDS makes it a long soak."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from serve_support import API_KEY, REPO, SERVING

pytestmark = pytest.mark.slow
sys.path.insert(0, str(REPO / "benchmarks"))


def test_mixed_load_from_many_clients_loses_nothing(server, serve_run_dir: Path) -> None:
    from transformers import AutoTokenizer

    from serve_soak import EXPECTED, GOOD, Limits, run_soak

    seconds = float(os.environ.get("FORGE_SOAK_SECONDS", "20"))
    limits = Limits(SERVING["max_new_tokens"], SERVING["max_input_tokens"], SERVING["max_request_bytes"])
    report = run_soak(server.url, server.process.pid, API_KEY, limits,
                      AutoTokenizer.from_pretrained(serve_run_dir / "adapter"),
                      duration=seconds, clients=24, seed=11, alive=lambda: server.process.poll() is None)
    summary = report.summary()
    assert report.problems == [], summary
    assert summary["server_alive"] and summary["requests"] >= 500
    assert set(summary["by_kind"]) == set(EXPECTED)  # every kind of request was sent
    assert all(o.status == EXPECTED[o.kind][0] or (o.kind in GOOD and o.status == 429) for o in report.outcomes)
    assert summary["good_answered"] > summary["requests"] // 4

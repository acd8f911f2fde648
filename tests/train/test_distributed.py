"""Multi-process training on the CPU: `forge run` with distribution.strategy ddp and two processes (gloo)
launches two ranks that train on different halves of each batch, and ends where one process with the same
effective batch (gradient accumulation) ends. A rank that dies ends the run with a resumable checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import assert_old_metrics_kept, metric_lines_up_to, train_losses

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "examples" / "data" / "high_quality_papers_demo.json"

RECIPE = """\
run: {{name: {name}, output_dir: {output_dir}, seed: 7}}
data:
  sources: [{{path: {demo}}}]
  max_papers: 80
  split: {{validation: 0.2, test: 0.0}}
preprocess: [{{step: normalize_whitespace}}]
model: {{name_or_path: {model}, dtype: float32}}
lora: {{r: 8, alpha: 16, dropout: 0.0, modules_to_save: [embed_tokens, lm_head]}}
optimizer: {{lr: 3.0e-3, warmup_ratio: 0.0}}
training:
  max_steps: {steps}
  micro_batch_size: 4
  gradient_accumulation_steps: {accumulation}
  max_seq_length: 64
  gradient_checkpointing: false
  mixed_precision: "no"
  logging_steps: 1
  save_steps: 2
  eval_steps: 2
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
distribution: {{strategy: ddp, num_processes: {processes}, main_port: {port}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp: Path, name: str, model: Path, processes: int, accumulation: int, steps: int = 4) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(RECIPE.format(name=name, output_dir=tmp / "runs", demo=DEMO, model=model, steps=steps,
                                  accumulation=accumulation, processes=processes, port=free_port()))
    return path


def forge_run(recipe: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "forge", "run", str(recipe), *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen[str], timeout: float = 400) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def test_two_process_ddp_matches_one_process_with_the_same_effective_batch(tmp_path: Path,
                                                                           tiny_llama_dir: Path) -> None:
    code, out = finish(forge_run(write(tmp_path, "ddp", tiny_llama_dir, processes=2, accumulation=1)))
    assert code == 0, out[-3000:]
    code, single_out = finish(forge_run(write(tmp_path, "single", tiny_llama_dir, processes=1, accumulation=2)))
    assert code == 0, single_out[-3000:]

    ddp_dir, single_dir = tmp_path / "runs" / "ddp", tmp_path / "runs" / "single"
    ddp, single = (json.loads((d / "summary.json").read_text()) for d in (ddp_dir, single_dir))
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    # each process's own peak (resident memory on the CPU), rank 0's also the summary's peak
    per_rank = ddp["peak_memory_bytes_per_rank"]
    assert len(per_rank) == 2 and all(v > 50 * 2**20 for v in per_rank) and per_rank[0] >= ddp["peak_memory_bytes"]
    assert "peak_memory_bytes_per_rank" not in single
    assert "launching 2 process(es)" in out and (ddp_dir / "accelerate.yaml").is_file()
    # both ranks trained: each saved its RNG state, and twice the tokens of one rank went through
    assert {p.name for p in (ddp_dir / "checkpoints" / "checkpoint-4").glob("rng_state*")} == \
        {"rng_state_0.pth", "rng_state_1.pth"}
    assert ddp["tokens_seen"] == single["tokens_seen"]
    assert out.count("forge run ddp\n") == 1  # rank 0 alone prints the run summary
    assert sum(line.startswith("forge run") for line in out.splitlines()) == 1  # and the launcher no header of its own
    # the same 8 examples per optimizer step, the mean of two ranks' gradients = one process's accumulated one
    got, expected = train_losses(ddp_dir), train_losses(single_dir)
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4]
    for step in expected:
        assert math.isclose(got[step], expected[step], rel_tol=2e-3), (step, got[step], expected[step])
    assert math.isclose(ddp["eval"]["loss"], single["eval"]["loss"], rel_tol=2e-3)
    assert ddp["eval"]["loss"] < ddp["eval"]["first_loss"]


def worker_pids(parent: int) -> dict[int, int]:
    """rank -> pid of the forge.train.worker processes under `parent`."""
    import psutil

    found = {}
    for child in psutil.Process(parent).children(recursive=True):
        try:
            if "forge.train.worker" in " ".join(child.cmdline()):
                found[int(child.environ().get("RANK", "-1"))] = child.pid
        except psutil.Error:
            continue
    return found


def test_a_dead_rank_ends_the_run_and_resume_finishes_it(tmp_path: Path, tiny_llama_dir: Path) -> None:
    recipe = write(tmp_path, "dies", tiny_llama_dir, processes=2, accumulation=1, steps=8)
    run_dir = tmp_path / "runs" / "dies"
    process = forge_run(recipe)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (run_dir / "checkpoints" / "checkpoint-2" / "forge-complete.json").exists():
            ranks = worker_pids(process.pid)
            if 1 in ranks:
                os.kill(ranks[1], signal.SIGKILL)
                break
        time.sleep(0.1)
    code, out = finish(process)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert code == 1, out[-3000:]
    assert summary["status"] == "failed" and "a training process exited" in summary["error"]
    assert "run again with --resume" in out
    last = summary["last_checkpoint"]
    assert last is not None and int(last.rsplit("-", 1)[1]) >= 2
    saved_step = int(last.rsplit("-", 1)[1])
    kept = metric_lines_up_to(run_dir, saved_step)

    code, out = finish(forge_run(recipe, "--resume"))
    assert code == 0, out[-3000:]
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "completed" and done["steps"] == 8 and done["resumed_from"] == last
    assert sorted(train_losses(run_dir)) == list(range(1, 9))
    # the resumed processes trained from the checkpoint's next step and left the earlier steps' lines alone
    assert_old_metrics_kept(run_dir, kept, saved_step)


def test_two_machines_of_one_process_each_on_localhost(tmp_path: Path, tiny_llama_dir: Path) -> None:
    recipe = write(tmp_path, "nodes", tiny_llama_dir, processes=1, accumulation=1, steps=2)
    machines = [forge_run(recipe, "distribution.num_machines=2", f"distribution.machine_rank={rank}")
                for rank in (0, 1)]
    results = [finish(m) for m in machines]
    for code, out in results:
        assert code == 0, out[-3000:]
    run_dir = tmp_path / "runs" / "nodes"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2 and summary["steps"] == 2
    assert {p.name for p in (run_dir / "checkpoints" / "checkpoint-2").glob("rng_state*")} == \
        {"rng_state_0.pth", "rng_state_1.pth"}
    assert (run_dir / "accelerate.yaml").is_file()
    assert [p.name for p in run_dir.parent.iterdir()] == ["nodes"]  # machine 1 moved nothing aside, wrote nothing
    assert "forge run nodes\n" in results[0][1] and "forge run nodes\n" not in results[1][1]  # global rank 0 prints

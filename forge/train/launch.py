"""Multi-process runs: `forge run` writes the accelerate (and DeepSpeed) configuration into the run
directory and starts `accelerate launch`, whose processes each run `forge.train.worker`, that is
`run_recipe` on their rank. A run that one process can do never comes here (it trains in-process).

The launcher owns the run directory's lifecycle (fresh or resumed, decided once, before any process
starts), forwards Ctrl-C/SIGTERM to the processes once, and turns a process that died into a clear
message and a summary that names the checkpoint to resume from.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from forge.errors import see_docs
from forge.atomic import read_json, write_json, write_text
from forge.plan import LaunchPlan, Plan
from forge.train.checkpoints import ResumeMode, checkpoint_info, prepare_run_dir


def launch_env(base: dict[str, str] | None = None, plan_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every launched process: NVLink multicast off (plan.launch.env), and a
    TORCH_CUDA_ARCH_LIST that DeepSpeed's op builder can parse (it rejects Hopper's `9.0a`)."""
    env = dict(os.environ if base is None else base)
    env.update(plan_env or {})
    if env.get("TORCH_CUDA_ARCH_LIST"):
        env["TORCH_CUDA_ARCH_LIST"] = re.sub(r"(\d+\.\d+)[a-z]+", r"\1", env["TORCH_CUDA_ARCH_LIST"])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def accelerate_config(launch: LaunchPlan, *, cuda: bool, deepspeed_file: str | None) -> dict[str, Any]:
    """accelerate's config (what `accelerate config` would write) for the plan's launch on this machine."""
    strategy = launch.strategy
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "num_processes": launch.world_size,
        "num_machines": launch.num_machines,
        "machine_rank": launch.machine_rank,
        "main_process_ip": launch.main_address,
        "main_process_port": launch.main_port,
        "main_training_function": "main",
        "use_cpu": not cuda,
        "rdzv_backend": "static",
        "same_network": True,
    }
    if strategy == "deepspeed":
        config["distributed_type"] = "DEEPSPEED"
        config["deepspeed_config"] = {"deepspeed_config_file": deepspeed_file, "zero3_init_flag": False}
    elif strategy == "fsdp":
        config["distributed_type"] = "FSDP"
        config["fsdp_config"] = {
            "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "SHARDED_STATE_DICT", "fsdp_cpu_ram_efficient_loading": True,
            # False as before: the plan's launch section has no offload_params, so distribution.offload_params
            # does not reach FSDP
            "fsdp_offload_params": False, "fsdp_use_orig_params": True,
        }
    else:
        config["distributed_type"] = ("MULTI_GPU" if cuda else "MULTI_CPU") if launch.world_size > 1 else "NO"
    if strategy != "deepspeed":  # with a DeepSpeed config file, accelerate refuses a mixed_precision of its own
        config["mixed_precision"] = "no"  # the trainer's bf16/fp16 arguments decide, from the recipe
    return config


def write_launch_files(plan: Plan, run_dir: Path, *, cuda: bool) -> Path:
    """accelerate.yaml (and deepspeed.json) in the run directory; returns the accelerate config to launch with.
    A config file of the user's (distribution.config_file) is used as is: a .json is DeepSpeed's, else accelerate's."""
    import yaml

    launch = plan.launch
    own = launch.config_file
    if own and not own.endswith(".json"):
        return Path(own)
    # Machine 0 owns the (shared) run directory; another machine of a multi-node run keeps its own accelerate
    # config in a local temporary folder, so that nothing it writes races machine 0's fresh-or-resume decision.
    first = launch.machine_rank == 0
    deepspeed_file = None
    if launch.strategy == "deepspeed":
        deepspeed_file = own or str(run_dir / "deepspeed.json")
        if not own and first:
            write_json(run_dir / "deepspeed.json", launch.deepspeed)
    path = (run_dir if first else Path(tempfile.mkdtemp(prefix="forge-launch-"))) / "accelerate.yaml"
    write_text(path, yaml.safe_dump(accelerate_config(launch, cuda=cuda, deepspeed_file=deepspeed_file),
                                    sort_keys=False))
    return path


def launch_command(config: Path, recipe_path: str, overrides: list[str], launch: LaunchPlan, *,
                   cuda: bool) -> list[str]:
    """`accelerate launch` on GPUs; on the CPU, torchrun (accelerate's CPU launcher needs MPI for more than one
    process), with the same rendezvous settings. Either starts `forge.train.worker` once per rank."""
    worker = ["-m", "forge.train.worker", recipe_path, *overrides]
    if cuda:
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *worker]
    return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={launch.num_machines}",
            f"--node_rank={launch.machine_rank}", f"--nproc_per_node={launch.num_processes}",
            f"--master_addr={launch.main_address}", f"--master_port={launch.main_port}", *worker]


def launch_run(recipe_path: str, overrides: list[str], plan: Plan, resume: ResumeMode = "auto") -> int:
    """Run the plan's processes to the end; returns the exit code `forge run` should give."""
    import torch

    from forge.model.load import prepare_tokenizer

    run_dir = Path(plan.run_dir).resolve()
    notes: list[str] = []
    if plan.launch.machine_rank == 0:
        from forge.data.readers import source_digests
        from forge.recipe.validate import resolve

        digests = source_digests(resolve(recipe_path, overrides).recipe.data.sources)
        # decided once, here: the processes only resume what is there
        prepare_run_dir(run_dir, resume, notes, sources_sha256=digests, plan=plan.to_dict())
        shutil.rmtree(run_dir / "ranks", ignore_errors=True)  # per-rank figures of an earlier session
    for note in notes:
        print(f"forge: {note}", flush=True)  # resuming, or the old run moved aside
    prepare_tokenizer(plan.model, plan.quantization)  # builds forge:tiny-* models once, before the processes
    cuda = torch.cuda.is_available()
    config = write_launch_files(plan, run_dir, cuda=cuda)
    command = launch_command(config, recipe_path, overrides, plan.launch, cuda=cuda)
    print(f"forge: launching {plan.launch.num_processes} process(es) on this machine, {plan.launch.world_size} "
          f"in all ({plan.launch.strategy}): {' '.join(command[2:4])} ...", flush=True)
    process = subprocess.Popen(command, env=launch_env(plan_env=plan.launch.env), start_new_session=True)
    forwarded: list[int] = []

    def forward(signum: int, frame: Any) -> None:
        if forwarded:  # a second Ctrl-C: stop at once
            os.killpg(process.pid, signal.SIGKILL)
            return
        forwarded.append(signum)
        print(f"\nforge: {signal.Signals(signum).name} received: the processes save a checkpoint and stop",
              flush=True)
        process.send_signal(signal.SIGTERM)  # the launcher passes it to every rank, once

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        returncode = process.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return _outcome(run_dir, returncode, forwarded)


def _outcome(run_dir: Path, returncode: int, forwarded: list[int]) -> int:
    """The exit code, from rank 0's summary; a process that died leaves a summary that says so."""
    summary = read_json(run_dir / "summary.json") or {"run_dir": str(run_dir)}
    finished = summary.get("status") in ("completed", "stopped", "failed", "interrupted")
    if returncode == 0 and finished:
        ranks = sorted(map(read_json, (run_dir / "ranks").glob("*.json")), key=lambda r: r.get("rank", 0))
        if ranks:  # every process has exited: its figures are all written
            summary["peak_memory_bytes_per_rank"] = [r.get("peak_memory_bytes") for r in ranks]
            write_json(run_dir / "summary.json", summary)
        return int(summary.get("exit_code", 0))
    if forwarded and summary.get("status") == "interrupted":
        return int(summary.get("exit_code", 128 + forwarded[0]))
    if summary.get("status") == "failed" and "error" in summary and "exception" not in summary:
        print(f"forge: {summary['error']}{see_docs('nan-loss')}", file=sys.stderr)  # the run explained it (NaN)
        return int(summary.get("exit_code", 1))
    info = checkpoint_info(run_dir / "checkpoints")
    last = info["last_checkpoint"]
    cause = (str(summary.get("error", "")).strip().splitlines() or [""])[0][:300]
    summary.update(status="interrupted" if forwarded else "failed", exit_code=128 + forwarded[0] if forwarded else 1,
                   error=f"a training process exited with code {returncode}"
                         + (f" (rank 0: {cause})" if cause else "")
                         + f"; the last complete checkpoint is {last or 'none'}", **info)
    write_json(run_dir / "summary.json", summary)
    resume = "; run again with --resume to continue" if last else ""
    print(f"forge: {summary['error']}{resume}{see_docs('a-rank-died')}", file=sys.stderr)
    return int(summary["exit_code"])

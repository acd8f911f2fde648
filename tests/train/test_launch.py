"""The launch files `forge run` writes for multi-process runs, and the environment its processes get."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from forge.plan import LAUNCH_ENV, LaunchPlan
from forge.train.launch import accelerate_config, launch_command, launch_env, write_launch_files

QLORA = Path(__file__).resolve().parents[2] / "recipes" / "base" / "qlora.yaml"


def plan_of(path: Path, text: str) -> Any:
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    path.write_text(text)
    return compile_plan(resolve(path).recipe)


def test_hopper_arch_suffix_is_dropped_and_nvlink_multicast_stays_off() -> None:
    env = launch_env({"TORCH_CUDA_ARCH_LIST": "8.0;9.0a;10.0a+PTX", "PATH": "/bin"}, LAUNCH_ENV)
    assert env["TORCH_CUDA_ARCH_LIST"] == "8.0;9.0;10.0+PTX"  # DeepSpeed's op builder parses these
    assert env["NCCL_NVLS_ENABLE"] == "0" and env["PATH"] == "/bin"
    assert "TORCH_CUDA_ARCH_LIST" not in launch_env({}, LAUNCH_ENV)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_files_are_written_and_agree(tmp_path: Path, stage: int) -> None:
    plan = plan_of(tmp_path / "ds.yaml", f"extends: {QLORA}\nmodel: {{name_or_path: m}}\n"
                   f"distribution: {{strategy: deepspeed, zero_stage: {stage}}}\n")
    config = write_launch_files(plan, tmp_path, cuda=True)
    accelerate = yaml.safe_load(config.read_text())
    assert accelerate["distributed_type"] == "DEEPSPEED"
    assert accelerate["deepspeed_config"]["deepspeed_config_file"] == str(tmp_path / "deepspeed.json")
    assert "mixed_precision" not in accelerate  # accelerate refuses it next to a DeepSpeed config file
    import json

    ds = json.loads((tmp_path / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == stage and ds["train_micro_batch_size_per_gpu"] == "auto"
    # QLoRA under ZeRO-3 stores 4-bit weights in the compute dtype so that they shard with the rest
    assert plan.quantization.bnb_4bit_quant_storage == ("bfloat16" if stage == 3 else "uint8")


def test_ddp_on_the_cpu_launches_torchrun_and_on_gpus_accelerate() -> None:
    launch = LaunchPlan(strategy="ddp", in_process=False, world_size=4, num_processes=2, num_machines=2,
                        machine_rank=1, main_address="10.0.0.1", main_port=29555, config_file=None, env={},
                        deepspeed=None)
    cpu = launch_command(Path("a.yaml"), "r.yaml", ["x=1"], launch, cuda=False)
    assert cpu[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=2", "--node_rank=1", "--nproc_per_node=2", "--master_addr=10.0.0.1",
            "--master_port=29555"} <= set(cpu)
    assert cpu[-4:] == ["-m", "forge.train.worker", "r.yaml", "x=1"]
    gpu = launch_command(Path("a.yaml"), "r.yaml", [], launch, cuda=True)
    assert gpu[1:5] == ["-m", "accelerate.commands.launch", "--config_file", "a.yaml"]
    config = accelerate_config(launch, cuda=True, deepspeed_file=None)
    assert config["distributed_type"] == "MULTI_GPU" and config["num_processes"] == 4
    assert config["machine_rank"] == 1 and config["main_process_ip"] == "10.0.0.1"
    one = dataclasses.replace(launch, world_size=1)
    assert accelerate_config(one, cuda=False, deepspeed_file=None)["distributed_type"] == "NO"


def test_a_users_own_accelerate_config_is_used_as_is(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: MULTI_GPU\n")
    plan = plan_of(tmp_path / "own.yaml", f"extends: {QLORA}\nmodel: {{name_or_path: m}}\n"
                   f"distribution: {{strategy: ddp, num_processes: 2, config_file: {own}}}\n")
    assert write_launch_files(plan, tmp_path / "run", cuda=True) == own
    assert not (tmp_path / "run" / "accelerate.yaml").exists()

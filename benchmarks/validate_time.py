#!/usr/bin/env python3
"""Time `forge validate` next to the start-up time of the peer fine-tuning tools.

Each command runs once unmeasured (warm file cache, .pyc files written), then
--runs times measured; the output is a Markdown table (median and min wall time, median
CPU time = user + sys of the command and its children, which other load on the machine
disturbs less than wall time) headed by the machine and the date, ready to paste into
BENCHMARKS.md. Every command runs with HF_HUB_OFFLINE=1, so no row waits on the network.

Commands:
  * Forge, from the repo's venv: `forge validate RECIPE` (one row per --recipe; the default is
    recipes/genomics_qlora.yaml and all recipes/*.yaml in one call) and `python -c "import forge.cli"`.
  * Baselines in the same venv: `import torch`, `import transformers`, `import trl`,
    `from trl import SFTTrainer` (each only if that package is installed there).
  * Peers (only those found), for each the step that checks a config and the CLI's start-up:
    torchtune (`tune validate <shipped config>`, `import torchtune`),
    Axolotl (its validate_config on a QLoRA config, `axolotl --help`),
    LLaMA-Factory (`llamafactory.hparams.get_train_args` on a QLoRA config, `llamafactory-cli version`),
    Unsloth (`import unsloth`: it has no config file, and this import is a script's first line).
    `import axolotl.cli` and `import llamafactory` are not timed: both import lazily and load
    neither torch nor the tool, so they say nothing about what a user waits for.
    For each peer TOOL the script uses the venv PEERS/TOOL if it exists, else PEERS itself,
    so PEERS can be one shared venv or a folder of one venv per tool.

Uses only the standard library; needs no peer installed (missing ones are listed as skipped).

    python benchmarks/validate_time.py                  # from the repo root
    python benchmarks/validate_time.py --peers /tmp/peers --runs 10
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from machine import cpu_model  # benchmarks/machine.py (the script's own folder is on the path)

REPO = Path(__file__).resolve().parent.parent

# A small Axolotl config (the shape of its examples/llama-3/qlora.yml; the pip package ships no
# examples). Axolotl has no stand-alone validate command: `axolotl preprocess`/`train` validate
# and then fetch the model config and tokenizer from the hub.
AXOLOTL_CFG = """\
base_model: NousResearch/Meta-Llama-3-8B
load_in_4bit: true
adapter: qlora
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true
datasets:
  - path: mhenrichsen/alpaca_2k_test
    type: alpaca
val_set_size: 0.05
output_dir: ./outputs/qlora-out
sequence_len: 4096
sample_packing: true
micro_batch_size: 2
gradient_accumulation_steps: 4
num_epochs: 1
optimizer: paged_adamw_32bit
lr_scheduler: cosine
learning_rate: 0.0002
bf16: auto
"""
# What `axolotl train/preprocess CONFIG` run first (axolotl.cli.config.load_cfg -> validate_config),
# without the GPU-capability probe and normalize_config, which need CUDA and the hub.
AXOLOTL_VALIDATE = (
    "import sys, yaml\n"
    "from axolotl.utils.config import validate_config\n"
    "from axolotl.utils.dict import DictDefault\n"
    "validate_config(DictDefault(yaml.safe_load(open(sys.argv[1]))))\n"
)

# LLaMA-Factory's examples/train_qlora/llama3_lora_sft_otfq.yaml (bnb 4-bit QLoRA), with
# bf16: false: its parser rejects bf16 on a machine without a GPU ("doesn't support bf16/gpu").
LLAMAFACTORY_CFG = """\
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
quantization_bit: 4
quantization_method: bnb
trust_remote_code: true
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
preprocessing_num_workers: 16
dataloader_num_workers: 4
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: false
ddp_timeout: 180000000
"""
# What `llamafactory-cli train CONFIG` runs first (run_exp -> get_train_args: parse and check
# the arguments), before it loads the tokenizer and the model.
LLAMAFACTORY_VALIDATE = (
    "import sys, yaml\n"
    "from llamafactory.hparams import get_train_args\n"
    "get_train_args(yaml.safe_load(open(sys.argv[1])))\n"
)


@dataclass
class Cmd:
    tool: str
    label: str  # what the table shows
    argv: list[str]
    cwd: Path | None = None
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    exit_codes: set[int] = field(default_factory=set)
    note: str = ""


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 0


def venv_python(venv: Path) -> Path | None:
    py = venv / "bin" / "python"
    return py if py.exists() else None


def has_module(py: Path, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([str(py), "-c", code], capture_output=True).returncode == 0


def versions(py: Path, dists: list[str]) -> str:
    code = (
        "import importlib.metadata as m, sys\n"
        "out = []\n"
        "for d in sys.argv[1:]:\n"
        "    try: out.append(f'{d} {m.version(d)}')\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(', '.join(out))\n"
    )
    r = subprocess.run([str(py), "-c", code, *dists], capture_output=True, text=True)
    return r.stdout.strip()


def torch_row(tool: str, py: Path, forge_torch: str | None) -> list[Cmd]:
    """`import torch` in a peer venv whose torch differs from Forge's (e.g. the CUDA wheel)."""
    tv = versions(py, ["torch"]).removeprefix("torch ").strip()
    if not tv or tv == forge_torch:
        return []
    return [Cmd(tool, f'python -c "import torch"  (its torch {tv})', [str(py), "-c", "import torch"])]


def peer_venv(peers: Path, tool: str) -> Path:
    own = peers / tool
    return own if venv_python(own) else peers


def collect(args: argparse.Namespace) -> tuple[list[Cmd], list[str], dict[str, str]]:
    cmds: list[Cmd] = []
    skipped: list[str] = []
    vers: dict[str, str] = {}
    base = ["torch", "transformers", "trl", "peft", "pydantic"]
    forge_torch = None

    # --- Forge and the baselines, in Forge's venv --------------------------------------
    fpy = venv_python(args.forge_venv)
    forge_exe = args.forge_venv / "bin" / "forge"
    if fpy and forge_exe.exists():
        vers["Forge venv"] = versions(fpy, ["forge-finetune", *base])
        forge_torch = versions(fpy, ["torch"]).removeprefix("torch ").strip() or None
        for recipe in args.recipe:
            files = shlex.split(recipe)
            if len(files) == 1 and any(ch in files[0] for ch in "*?["):
                files = sorted(str(Path(f).relative_to(REPO)) for f in glob.glob(str(REPO / files[0])))
            label = f"forge validate {recipe}" + (f"  ({len(files)} recipes)" if len(files) > 1 else "")
            cmds.append(Cmd("Forge", label, [str(forge_exe), "validate", *files], REPO))
        cmds.append(Cmd("Forge", 'python -c "import forge.cli"', [str(fpy), "-c", "import forge.cli"], REPO))
        # transformers and trl import lazily; `from trl import SFTTrainer` is what a training
        # script (and so a tool built on trl) actually pays.
        for mod, stmt in (("torch", "import torch"), ("transformers", "import transformers"),
                          ("trl", "import trl"), ("trl", "from trl import SFTTrainer")):
            if has_module(fpy, mod):
                cmds.append(Cmd("baseline", f'python -c "{stmt}"', [str(fpy), "-c", stmt]))
            else:
                skipped.append(f"baseline `{stmt}`: {mod} not installed in {args.forge_venv}")
    else:
        skipped.append(f"Forge: no venv with `forge` at {args.forge_venv}")

    # --- peers ---------------------------------------------------------------------------
    peers = args.peers
    # torchtune
    v = peer_venv(peers, "torchtune")
    py, tune = venv_python(v), v / "bin" / "tune"
    if py and tune.exists():
        vers["torchtune venv"] = versions(py, ["torchtune", "torchao", "omegaconf", *base])
        cfgs = sorted(glob.glob(str(v / "lib" / "python*" / "site-packages" / "recipes" / "configs"
                                    / "llama2" / "7B_qlora_single_device.yaml")))
        if cfgs:
            cmds.append(Cmd("torchtune", "tune validate recipes/configs/llama2/7B_qlora_single_device.yaml",
                            [str(tune), "validate", cfgs[0]]))
        else:
            skipped.append("torchtune: shipped config llama2/7B_qlora_single_device.yaml not found")
        cmds.append(Cmd("torchtune", 'python -c "import torchtune"', [str(py), "-c", "import torchtune"]))
        cmds += torch_row("torchtune", py, forge_torch)
    else:
        skipped.append(f"torchtune: no `tune` in {v}")

    # Axolotl
    v = peer_venv(peers, "axolotl")
    py = venv_python(v)
    if py and has_module(py, "axolotl"):
        vers["Axolotl venv"] = versions(py, ["axolotl", *base])
        cfg = args.workdir / "axolotl_qlora.yml"
        cfg.write_text(AXOLOTL_CFG)
        cmds.append(Cmd("Axolotl", "validate_config(DictDefault(yaml.safe_load(qlora.yml)))",
                        [str(py), "-c", AXOLOTL_VALIDATE, str(cfg)]))
        # `import axolotl.cli` only sets up logging; `axolotl --help` loads the real CLI.
        if (v / "bin" / "axolotl").exists():
            cmds.append(Cmd("Axolotl", "axolotl --help", [str(v / "bin" / "axolotl"), "--help"]))
        cmds += torch_row("Axolotl", py, forge_torch)
    else:
        skipped.append(f"Axolotl: not installed in {v}")

    # LLaMA-Factory
    v = peer_venv(peers, "llamafactory")
    py, cli = venv_python(v), v / "bin" / "llamafactory-cli"
    if py and has_module(py, "llamafactory"):
        vers["LLaMA-Factory venv"] = versions(py, ["llamafactory", *base])
        cfg = args.workdir / "llamafactory_qlora.yaml"
        cfg.write_text(LLAMAFACTORY_CFG)
        cmds.append(Cmd("LLaMA-Factory", "get_train_args(yaml.safe_load(qlora.yaml))",
                        [str(py), "-c", LLAMAFACTORY_VALIDATE, str(cfg)]))
        # `import llamafactory` is lazy (0.05 s, no torch); the CLI loads transformers.
        if cli.exists():
            cmds.append(Cmd("LLaMA-Factory", "llamafactory-cli version", [str(cli), "version"]))
        cmds += torch_row("LLaMA-Factory", py, forge_torch)
    else:
        skipped.append(f"LLaMA-Factory: not installed in {v}")

    # Unsloth
    v = peer_venv(peers, "unsloth")
    py = venv_python(v)
    if py and has_module(py, "unsloth"):
        vers["Unsloth venv"] = versions(py, ["unsloth", "unsloth_zoo", *base])
        cmds.append(Cmd("Unsloth", 'python -c "import unsloth"', [str(py), "-c", "import unsloth"]))
        cmds += torch_row("Unsloth", py, forge_torch)
    else:
        skipped.append(f"Unsloth: not installed in {v}")

    return cmds, skipped, vers


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_one(cmd: Cmd, timeout: float) -> tuple[float, float, int, str]:
    """Wall and CPU seconds (user + sys of the waited-for process tree), exit code, output."""
    c0, t0 = _children_cpu(), time.perf_counter()
    try:
        r = subprocess.run(cmd.argv, cwd=cmd.cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
        rc, err = r.returncode, (r.stderr or r.stdout)
    except subprocess.TimeoutExpired:
        rc, err = -1, f"timed out after {timeout:.0f} s"
    return time.perf_counter() - t0, _children_cpu() - c0, rc, err


def measure(cmd: Cmd, runs: int, timeout: float, verbose: bool) -> None:
    _, _, rc, err = run_one(cmd, timeout)  # warm-up, not measured
    if rc != 0:
        last = [ln for ln in err.strip().splitlines() if ln.strip()]
        cmd.note = last[-1][:160] if last else f"exit {rc}"
    if rc == -1:  # a hang: do not spend runs x timeout on it
        cmd.exit_codes.add(rc)
        return
    for _ in range(runs):
        dt, cpu, rc, _ = run_one(cmd, timeout)
        cmd.times.append(dt)
        cmd.cpu.append(cpu)
        cmd.exit_codes.add(rc)
    if verbose:
        print(f"  {cmd.tool:14} {statistics.median(cmd.times):7.3f} s wall, "
              f"{statistics.median(cmd.cpu):7.3f} s CPU  {cmd.label}", file=sys.stderr)


def table(cmds: list[Cmd]) -> str:
    rows = ["| tool | command | exit | median wall s | min wall s | median CPU s | runs |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for c in cmds:
        exit_ = ", ".join(str(e) if e != -1 else "timeout" for e in sorted(c.exit_codes))
        if c.times:
            med, mn = f"{statistics.median(c.times):.2f}", f"{min(c.times):.2f}"
            cpu = f"{statistics.median(c.cpu):.2f}"
        else:
            med = mn = cpu = "—"
        rows.append(f"| {c.tool} | `{c.label}` | {exit_} | {med} | {mn} | {cpu} | {len(c.times)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", "-n", type=int, default=5, help="measured runs per command (default 5)")
    ap.add_argument("--peers", type=Path, default=Path("/tmp/peers"),
                    help="peer venv, or folder of per-tool venvs PEERS/<tool> (default /tmp/peers)")
    ap.add_argument("--forge-venv", type=Path, default=REPO / ".venv", help="Forge's venv (default REPO/.venv)")
    ap.add_argument("--recipe", action="append",
                    help="recipe for `forge validate`, relative to the repo root "
                         "(repeatable, one row each; several files or a glob in one value run in one call; "
                         "default: recipes/genomics_qlora.yaml and 'recipes/*.yaml')")
    ap.add_argument("--timeout", type=float, default=300, help="seconds allowed per run (default 300)")
    ap.add_argument("--date", default=_dt.date.today().isoformat(), help="date printed in the header")
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the Axolotl test config (default: a temp dir)")
    ap.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    args.recipe = args.recipe or ["recipes/genomics_qlora.yaml", "recipes/*.yaml"]
    if args.workdir is None:
        import tempfile
        args.workdir = Path(tempfile.mkdtemp(prefix="validate_time_"))

    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    cmds, skipped, vers = collect(args)
    for c in cmds:  # peers may drop files in the cwd (Unsloth: unsloth_compiled_cache/)
        c.cwd = c.cwd or args.workdir
    for c in cmds:
        if not args.quiet:
            print(f"running {c.label} ({c.tool}) ...", file=sys.stderr)
        measure(c, args.runs, args.timeout, not args.quiet)

    print(f"Date: {args.date}. Machine: {cpu_model()}, {cores()} cores, {platform.machine()}, "
          f"Linux {platform.release()}, Python {platform.python_version()}. "
          f"Wall and CPU (user + sys) time of each command, one unmeasured warm-up then {args.runs} runs "
          f"(warm file cache), HF_HUB_OFFLINE=1. "
          f"1-min load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after.")
    print()
    print(table(cmds))
    notes = [f"- {c.tool} `{c.label}`: exit != 0: {c.note}" for c in cmds if c.note]
    if vers or skipped or notes:
        print()
    for name, v in vers.items():
        print(f"- {name}: {v}")
    for s in skipped:
        print(f"- skipped: {s}")
    for n in notes:
        print(n)
    if not args.quiet:
        print(f"validate_time.py took {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

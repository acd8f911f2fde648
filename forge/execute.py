"""Execute: the one stage that imports the heavy stack. It resolves and compiles the recipe like
`forge plan`, checks what depends on this machine, then hands the Plan to the trainer.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from forge.errors import ForgeError
from forge.model.errors import ForgeRuntimeError
from forge.plan import Plan, compile_plan
from forge.recipe.errors import RecipeError
from forge.recipe.rules import runtime_issues
from forge.recipe.validate import Resolved, place, resolve
from forge.atomic import read_json


def prepare(recipe_path: str, overrides: list[str]) -> tuple[Resolved, Plan]:
    """Resolve, compile and check a recipe against this machine; raise before anything heavy is loaded."""
    resolved = resolve(recipe_path, overrides)
    plan = compile_plan(resolved.recipe)
    check_machine(resolved, plan)
    return resolved, plan


def check_machine(resolved: Resolved, plan: Plan) -> None:
    """What depends on this machine (CUDA for 4-bit and DeepSpeed); the first step that imports torch."""
    if plan.launch.in_process and "CUDA_VISIBLE_DEVICES" not in os.environ:
        # one process trains on one GPU: with several visible, the trainer would fall back to nn.DataParallel
        os.environ["CUDA_VISIBLE_DEVICES"] = "0"
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        # DeepSpeed (imported by transformers when installed) otherwise probes for an accelerator and prints
        # its finding on stdout, which would corrupt `--json` output
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    issues = runtime_issues(resolved.recipe, cuda)
    if issues:
        raise RecipeError([place(resolved.positions, resolved.chain[-1], *issue) for issue in issues])


def check_run_dir_writable(run_dir: str) -> None:
    """Refuse a run directory that cannot be created or written (a read-only output folder, a path through a
    file) before anything is loaded, rather than with a traceback after the data and model were."""
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".forge-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
        raise ForgeRuntimeError(f"cannot create or write the run directory {path}: {e.strerror or e}{where}",
                                "set run.output_dir to a folder you can write, or fix the folder's permissions",
                                doc="run-directory-not-writable") from None


def execute(recipe_path: str, overrides: list[str], resume: str = "auto") -> int:
    """`forge run`: returns the process exit code."""
    resolved = resolve(recipe_path, overrides)
    plan = compile_plan(resolved.recipe)
    # decided before torch is imported, so that a run already done says so at once
    done = read_json(f"{plan.run_dir}/summary.json")
    if resume != "never" and done.get("status") in ("completed", "stopped") and \
            _read_text(f"{plan.run_dir}/recipe.yaml") == resolved.yaml_text and _same_data(resolved, done):
        print(f"forge: {plan.run_dir} already holds this recipe's finished run ({done.get('steps')} steps, "
              f"adapter in {done.get('adapter_path')}); run with --fresh to train it again", flush=True)
        return 0
    check_run_dir_writable(plan.run_dir)
    check_machine(resolved, plan)
    from forge.train.run import exit_code, run_recipe

    if plan.launch.in_process:
        # the run's summary block is printed once, by the process that trains (rank 0 under a launch)
        summary = run_recipe(resolved, plan, resume=resume)
        code = exit_code(summary)
    else:  # several processes (or DeepSpeed/FSDP): accelerate launch, one forge.train.worker per rank
        from forge.train.launch import launch_run

        code = launch_run(recipe_path, overrides, plan, resume=resume)
        summary = read_json(f"{plan.run_dir}/summary.json")
    if summary.get("status") in ("completed", "stopped") and resolved.recipe.evaluation.enabled:
        code = code or evaluate_after_training(plan.run_dir)
    return code


def _same_data(resolved: Resolved, summary: dict[str, Any]) -> bool:
    """Whether the data files are the ones the finished run trained on (else the resume check says what changed)."""
    from forge.data.readers import source_digests

    recorded = (summary.get("data") or {}).get("sources_sha256")
    return recorded is None or recorded == source_digests(resolved.recipe.data.sources)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def evaluate_after_training(run_dir: str) -> int:
    """`forge eval RUN_DIR` at the end of `forge run` (evaluation.enabled): 0, or 1 when a quality gate fails.
    A problem that stops the evaluation (no held-out examples, say) is reported but keeps the trained run."""
    from forge.evaluate.errors import EvaluationError
    from forge.evaluate.run import eval_command

    try:
        return eval_command(run_dir)
    except ForgeError as e:
        raise EvaluationError(f"training finished, but the evaluation could not run: {e.message}",
                              f"{e.hint + '; ' if e.hint else ''}then run forge eval {run_dir}") from e


def data_preview(recipe_path: str, overrides: list[str], n: int, as_json: bool) -> int:
    """`forge data preview`: a few processed examples and the corpus statistics."""
    resolved, plan = prepare(recipe_path, overrides)
    from forge.data.preview import format_preview, preview
    from forge.model.load import load_tokenizer

    tokenizer = load_tokenizer(plan)
    result: dict[str, Any] = preview(resolved.recipe, tokenizer=tokenizer, n=n)
    print(json.dumps(result, indent=2, default=str) if as_json else format_preview(result))
    return 0

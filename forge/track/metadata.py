"""What Forge records about a run besides its metrics, so that a run can be found, compared and reproduced:
the resolved recipe (flattened as parameters and as a file), the parent recipe chain and overrides, the plan,
git commit and dirty state, library versions and the device. `track_run` opens the MLflow run with all of it.

Called by execute (torch is already imported there); MLflow's own context tags (mlflow.source.git.commit,
mlflow.user, mlflow.note.content) are set by hand because MlflowClient.create_run does not resolve them and
the repository that matters is the recipe's, not the `forge` script's.
"""
from __future__ import annotations

import getpass
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, Sequence

from forge.track.mlflow_log import MlflowTracker, flatten, start_tracking

LIBRARIES = ("forge-finetune", "torch", "transformers", "peft", "trl", "datasets", "accelerate", "tokenizers",
             "bitsandbytes", "deepspeed", "mlflow")
MAX_DIFF_BYTES = 2_000_000


class ResolvedLike(Protocol):
    recipe: Any
    yaml_text: str


def track_run(resolved: ResolvedLike, plan: Any, run_dir: Path, resume_run_id: str | None = None
              ) -> MlflowTracker | None:
    """Open the MLflow run of a `forge run` (or reopen it on resume) and log everything known before training:
    tags, flattened recipe, recipe.yaml, plan.json, the recipe chain's files, environment.json, a git diff when
    the working tree is dirty. None when tracking is off."""
    recipe = resolved.recipe
    chain = [str(c) for c in getattr(resolved, "chain", []) or []]
    overrides = [str(o) for o in getattr(resolved, "overrides", []) or []]
    top = getattr(resolved, "path", None) or (chain[-1] if chain else None)
    env = environment(Path(top).resolve().parent if top else Path.cwd(), plan)
    tags = run_tags(recipe, chain, overrides, env)
    tracker = start_tracking(recipe.tracking.model_dump(), output_dir=recipe.run.output_dir,
                             run_name=recipe.run.name, run_dir=run_dir, resume_run_id=resume_run_id, tags=tags)
    if tracker is None:
        return None
    if resume_run_id and tracker.run_id == resume_run_id:
        tracker.set_tags(tags)  # a reopened run keeps its tags from creation; versions or git may have moved
    tracker.log_params(flatten(recipe.model_dump(mode="json", exclude={"extends"})))
    diff = (env.get("git") or {}).pop("diff", None)
    _write_json(run_dir / "environment.json", env)
    for name in ("recipe.yaml", "plan.json", "environment.json"):
        tracker.log_artifact(run_dir / name)
    for i, path in enumerate(chain, 1):
        if Path(path).is_file():
            tracker.log_artifact(_copy_into(run_dir / "recipe_chain", f"{i}-{Path(path).name}", Path(path)),
                                 "recipe_chain")
    if diff:
        (run_dir / "git_diff.patch").write_text(diff, encoding="utf-8")
        tracker.log_artifact(run_dir / "git_diff.patch")
    return tracker


def run_tags(recipe: Any, chain: Sequence[str], overrides: Sequence[str], env: dict[str, Any]) -> dict[str, str]:
    """MLflow tags: the recipe chain, overrides, description, git, versions and device."""
    tags = {
        "forge.recipe": chain[-1] if chain else "",
        "forge.recipe.chain": " -> ".join(chain),
        "forge.recipe.overrides": " ".join(overrides),
        "forge.device": env["device"],
        "forge.python": env["python"],
        "mlflow.user": env["user"],
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": chain[-1] if chain else "forge run",
    }
    if recipe.run.description:
        tags["mlflow.note.content"] = recipe.run.description  # the run's description in the MLflow UI
    for name, version in env["versions"].items():
        tags[f"forge.version.{name}"] = version
    git = env.get("git")
    if git:
        tags.update({"mlflow.source.git.commit": git["commit"], "forge.git.commit": git["commit"],
                     "forge.git.dirty": str(git["dirty"]).lower()})
        if git.get("branch"):
            tags["mlflow.source.git.branch"] = git["branch"]
        if git.get("remote"):
            tags["mlflow.source.git.repoURL"] = git["remote"]
    return {k: v for k, v in tags.items() if v != ""}


def environment(folder: Path, plan: Any = None) -> dict[str, Any]:
    """Where the run ran: git state of `folder`'s repository, library versions, device, python, host."""
    env: dict[str, Any] = {"versions": library_versions(), "device": device(plan),
                           "python": platform.python_version(), "platform": platform.platform(),
                           "host": platform.node(), "user": _user()}
    git = git_state(folder)
    if git:
        env["git"] = git
    return env


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name.removesuffix("-finetune")] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device(plan: Any = None) -> str:
    """"cpu (16 CPUs)" or "cuda: 2 x NVIDIA H100 80GB HBM3, CUDA 12.8", plus the processes of the launch."""
    launch = getattr(plan, "launch", None)  # a Plan's LaunchPlan, or none (a bare environment report)
    world = launch.world_size if launch is not None else 1
    suffix = f", {world} processes" if world and world > 1 else ""
    try:
        import torch
    except ImportError:
        return f"cpu ({os.cpu_count()} CPUs){suffix}"
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        kinds = sorted(set(names))
        text = ", ".join(f"{names.count(k)} x {k}" for k in kinds)
        return f"cuda: {text}, CUDA {torch.version.cuda}{suffix}"
    return f"cpu ({os.cpu_count()} CPUs){suffix}"


def git_state(folder: Path) -> dict[str, Any] | None:
    """Commit, branch, remote and dirty state (tracked files changed against HEAD) of the repository holding
    `folder`, with the diff when dirty; None outside a repository or without git."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=20,
                              check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    state: dict[str, Any] = {"commit": commit}
    try:
        state["branch"] = git("rev-parse", "--abbrev-ref", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
        state["dirty"] = bool(changed)
        state["changed_files"] = len(changed)
        if changed:
            diff = git("diff", "HEAD")
            state["diff"] = diff[:MAX_DIFF_BYTES]
    except (OSError, subprocess.SubprocessError):
        state.setdefault("dirty", True)
    try:
        state["remote"] = _without_credentials(git("remote", "get-url", "origin"))
    except (OSError, subprocess.SubprocessError):
        pass
    return state


def _without_credentials(url: str) -> str:
    """A remote URL without the user:token@ that CI checkouts put in it (never recorded with a run)."""
    import re

    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", url)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _copy_into(folder: Path, name: str, source: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_bytes(source.read_bytes())
    return target


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)

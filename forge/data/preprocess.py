"""Running the recipe's `preprocess` list: find each step (built in, from the item's `module`, or from a
`forge.steps` entry point), validate its arguments, and apply the steps in order with statistics.

Consecutive per-paper steps form a stage; with `num_proc > 1` and a large corpus, a stage runs over
shards of the papers in a pool of spawned processes (each shard runs every step of the stage), and the
shards come back in order, so the result does not depend on the number of processes.
"""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from forge.data.errors import DataError
from forge.data.papers import GeneAnnotation, ScientificPaper, Section, validation_reason
from forge.data.steps import STEPS, StepContext, StepOutput, is_per_paper
from forge.recipe.schema import PreprocessStep
from forge.registry import import_user_module

ENTRY_POINT_GROUP = "forge.steps"
MIN_PAPERS_PER_PROCESS = 2000  # below this a process pool costs more than it saves


@dataclass(frozen=True)
class ResolvedStep:
    """A recipe step ready to run: its position in `preprocess`, registry entry and validated arguments."""

    index: int
    name: str
    params: BaseModel
    module: str | None = None

    @property
    def function(self) -> Any:
        return STEPS.get(self.name).function


@dataclass
class StepStats:
    """What one step did: papers in and out, drops by reason, and seconds spent (summed over processes)."""

    name: str
    papers_in: int = 0
    papers_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, papers_in: int, papers_out: int, dropped: dict[str, int], seconds: float) -> None:
        self.papers_in += papers_in
        self.papers_out += papers_out
        self.dropped = dict(Counter(self.dropped) + Counter(dropped))
        self.seconds += seconds


@dataclass
class PreprocessResult:
    """The papers after every step, the same papers before any chunking (for evaluation), and stats."""

    papers: list[ScientificPaper]
    whole_papers: list[ScientificPaper]
    steps: list[StepStats]


def load_user_modules(modules: Sequence[str]) -> None:
    """Import each module a recipe step names."""
    for module in modules:
        load_user_module(module)


def load_user_module(module: str) -> None:
    """Import the module a recipe step names (a dotted name, or a path to a .py file), once per process."""
    try:
        import_user_module(module, "forge_user_steps")
    except FileNotFoundError as error:
        raise DataError(f"step module file {error}", "check the module path in preprocess") from error
    except ModuleNotFoundError as error:
        raise DataError(f"cannot import step module {module!r}: {error}",
                        "install it, or put it on PYTHONPATH, or give a path to a .py file") from error


def load_entry_point(name: str) -> bool:
    """Load the `forge.steps` entry point of this name, which must register the step; True if found."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    for ep in found:
        try:
            ep.load()
        except Exception as error:  # a broken plug-in: name it rather than fail deep inside importlib
            raise DataError(f"entry point {ENTRY_POINT_GROUP}:{name} ({ep.value}) failed to load: {error}",
                            "fix or uninstall the package that provides it") from error
    return bool(found)


def resolve_steps(specs: Sequence[PreprocessStep]) -> list[ResolvedStep]:
    """Each recipe step with its function found and its arguments validated; a DataError names the
    first step that cannot run."""
    resolved = []
    for i, spec in enumerate(specs):
        where = f"preprocess[{i}] ({spec.step})"
        if spec.module:
            try:
                load_user_module(spec.module)
            except ValueError as error:  # Registry.register: a name registered twice
                raise DataError(f"{where}: {error}", "give the user step a name of its own") from error
        if spec.step not in STEPS and not load_entry_point(spec.step) and spec.module is None:
            hint = STEPS.suggest(spec.step)
            raise DataError(f"{where}: unknown preprocessing step {spec.step!r}",
                            f"did you mean {hint!r}?" if hint else "see `forge steps`")
        if spec.step not in STEPS:
            source = f"module {spec.module!r}" if spec.module else f"entry point {ENTRY_POINT_GROUP}:{spec.step}"
            raise DataError(f"{where}: {source} did not register a step named {spec.step!r}",
                            "register it with @STEPS.register(name, Params) from forge.data.steps")
        try:
            params = STEPS.get(spec.step).params.model_validate(dict(spec.model_extra or {}))
        except ValidationError as error:
            raise DataError(f"{where}: {validation_reason(error)}", "see `forge steps` for its arguments") from error
        resolved.append(ResolvedStep(i, spec.step, params, spec.module))
    return resolved


def run_steps(papers: list[ScientificPaper], steps: Sequence[ResolvedStep], context: StepContext,
              num_proc: int = 1, progress: bool = False,
              min_papers_per_process: int = MIN_PAPERS_PER_PROCESS) -> PreprocessResult:
    """Apply the steps in order. A step that leaves no papers raises a DataError naming it."""
    stats = [StepStats(step.name) for step in steps]
    whole = papers
    i = 0
    with contextlib.ExitStack() as stack:
        pool = None  # started at the first stage that needs it and kept for the next: spawning costs seconds
        while i < len(steps):
            stage = [i]
            while is_per_paper(steps[i].function) and stage[-1] + 1 < len(steps) \
                    and is_per_paper(steps[stage[-1] + 1].function):
                stage.append(stage[-1] + 1)
            processes = min(num_proc, len(papers) // max(1, min_papers_per_process))
            if processes > 1 and is_per_paper(steps[i].function):
                if pool is None:
                    pool = stack.enter_context(_process_pool(processes, steps))
                papers = _run_sharded(papers, [steps[j] for j in stage], [stats[j] for j in stage], context,
                                      pool, processes, progress)
            else:
                papers = _run_stage(papers, [steps[j] for j in stage], [stats[j] for j in stage], context, progress)
            for j in stage:
                if stats[j].papers_out == 0 and stats[j].papers_in > 0:
                    raise DataError(f"preprocessing emptied the corpus at step {j} ({steps[j].name}): "
                                    f"{stats[j].papers_in} papers in, 0 out ({_reasons(stats[j].dropped)})",
                                    "loosen that step's arguments or remove it")
            if not any(p.chunk_index is not None for p in papers):
                whole = papers
            i = stage[-1] + 1
    if whole is not papers:
        surviving = {p.id for p in papers}
        whole = [p for p in whole if p.id in surviving]
    return PreprocessResult(papers, whole, stats)


def _reasons(dropped: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {count}" for reason, count in sorted(dropped.items(), key=lambda kv: -kv[1])) \
        or "no reason given"


def _apply(step: ResolvedStep, papers: list[ScientificPaper], context: StepContext) -> tuple[StepOutput, float]:
    start = time.perf_counter()
    try:
        output = step.function(papers, step.params, context)
    except DataError:
        raise
    except Exception as error:  # a step's own bug or bad input: say which step, keep the cause
        raise DataError(f"preprocess[{step.index}] ({step.name}) failed: {type(error).__name__}: {error}".splitlines()[0],
                        "fix the step or its input; run_steps from Python shows the traceback") from error
    if isinstance(output, list):
        output = StepOutput(output, {"dropped": len(papers) - len(output)} if len(output) < len(papers) else {})
    return output, time.perf_counter() - start


def _run_stage(papers: list[ScientificPaper], steps: list[ResolvedStep], stats: list[StepStats],
               context: StepContext, progress: bool) -> list[ScientificPaper]:
    from forge.console import progress_bar

    for step, stat in progress_bar(list(zip(steps, stats)), desc="preprocessing", unit=" steps", disable=not progress,
                           delay=1, leave=False):
        output, seconds = _apply(step, papers, context)
        stat.add(len(papers), len(output.papers), output.dropped, seconds)
        papers = output.papers
    return papers


def _process_pool(processes: int, steps: Sequence[ResolvedStep]) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked copy of a process that has used the tokenizer's threads can deadlock.
    # The initializer imports the user step modules before any shard (and its arguments) is unpickled.
    modules = sorted({s.module for s in steps if s.module})
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=load_user_modules, initargs=(modules,))


def _run_sharded(papers: list[ScientificPaper], steps: list[ResolvedStep], stats: list[StepStats],
                 context: StepContext, pool: Any, processes: int, progress: bool) -> list[ScientificPaper]:
    from forge.console import progress_bar

    size = max(1, -(-len(papers) // (processes * 4)))  # a few shards per process evens out the load
    shards = [papers[k:k + size] for k in range(0, len(papers), size)]
    out: list[ScientificPaper] = []
    names = ", ".join(s.name for s in steps)
    with progress_bar(total=len(papers), desc=f"preprocessing ({names})", unit=" papers", disable=not progress, delay=1,
              leave=False) as bar:
        futures = [pool.submit(run_shard, to_rows(shard), steps, context) for shard in shards]
        for shard, future in zip(shards, futures):
            kept, shard_stats = future.result()
            for stat, counts in zip(stats, shard_stats):
                stat.add(*counts)
            out.extend(from_rows(kept))
            bar.update(len(shard))
    return out


def run_shard(rows: list[PaperRow], steps: list[ResolvedStep], context: StepContext,
              ) -> tuple[list[PaperRow], list[tuple[int, int, dict[str, int], float]]]:
    """Run consecutive per-paper steps over one shard, in a worker process; returns the papers kept and,
    per step, (papers in, papers out, dropped by reason, seconds)."""
    papers = from_rows(rows)
    stats = []
    for step in steps:
        output, seconds = _apply(step, papers, context)
        stats.append((len(papers), len(output.papers), output.dropped, seconds))
        papers = output.papers
    return to_rows(papers), stats


# Processes exchange papers as plain tuples. Pickling the pydantic models themselves (with their field
# sets, through __getstate__/__setstate__) cost as much as the steps' own work, and left two processes
# slower than one. Rows come from validated papers, so rebuilding them skips validation.
PaperRow = tuple[Any, ...]
_FIELDS = tuple(ScientificPaper.model_fields)
_SECTIONS, _GENES = _FIELDS.index("sections"), _FIELDS.index("genes")
_set = object.__setattr__


def to_rows(papers: list[ScientificPaper]) -> list[PaperRow]:
    """Papers as tuples of their field values, sections and genes as tuples of theirs."""
    rows = []
    for paper in papers:
        values = [paper.__dict__[name] for name in _FIELDS]
        values[_SECTIONS] = tuple((s.heading, s.text) for s in paper.sections)
        values[_GENES] = tuple((g.symbol, g.aliases) for g in paper.genes)
        rows.append(tuple(values))
    return rows


def from_rows(rows: list[PaperRow]) -> list[ScientificPaper]:
    """The papers `to_rows` took apart (equal to the originals)."""
    import gc

    collecting = gc.isenabled()
    gc.disable()  # many small objects at once set off the cyclic collector again and again, for nothing
    try:
        papers = []
        for row in rows:
            values = dict(zip(_FIELDS, row))
            values["sections"] = tuple(_built(Section, {"heading": h, "text": t}) for h, t in row[_SECTIONS])
            values["genes"] = tuple(_built(GeneAnnotation, {"symbol": s, "aliases": a}) for s, a in row[_GENES])
            papers.append(_built(ScientificPaper, values))
        return papers
    finally:
        if collecting:
            gc.enable()


def _built(cls: type[BaseModel], values: dict[str, Any]) -> Any:
    """A model instance from already-valid values, as pydantic's own unpickling makes it."""
    model = cls.__new__(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model

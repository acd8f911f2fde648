"""`forge run`, executed: `run_recipe` takes a resolved recipe and its Plan through a whole training run as a
list of named stages, each returning a small frozen record: the run directory (resumed or fresh), the parent
adapter, tokenizer and data, the speed switches, the model, the memory plan, the trainer's arguments, tracking,
the trainer, training, the final adapter and the summary.

Everything a run produces lands in `<run_dir>`: recipe.yaml, plan.json, metrics.jsonl, checkpoints/,
adapter/ and summary.json (see docs/training.md).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from forge.data.readers import source_digests
from forge.file_modes import as_umask_allows
from forge.model.errors import ForgeRuntimeError
from forge.model.report import human_bytes, peak_memory_bytes, peak_reserved_bytes
from forge.plan import FourBitPlan, LaunchPlan, Plan
from forge.recipe.schema import Recipe
from forge.atomic import disk_full, read_json, read_jsonl, write_json, write_text
from forge.train.checkpoints import ResumeMode, checkpoint_info, prepare_run_dir
from forge.train.progress import plan_summary, quiet_library_bars

if TYPE_CHECKING:
    from forge.model.load import LoadedModel, LoadedTokenizer
    from forge.train.memory import MemoryPlan
    from forge.train.speed import Speed
    from forge.train.trainer import TrainerSettings

EXIT_CODES = {"completed": 0, "stopped": 0, "failed": 1}


class ResolvedRecipe(Protocol):
    recipe: Recipe
    yaml_text: str


def exit_code(summary: dict[str, Any]) -> int:
    """The process exit code for a run's summary: 0 done, 1 failed, 130/143 interrupted by SIGINT/SIGTERM."""
    return int(summary.get("exit_code", EXIT_CODES.get(summary.get("status", "failed"), 1)))


def load_data(recipe: Recipe, tokenizer: Any, progress: bool) -> Any:
    """The data layer's splits for this recipe (raises forge.data.DataError when nothing is left): papers, or
    for a token classifier the word-tagged sentences of its conll sources."""
    if recipe.model.task == "token_classification":
        from forge.data.conll import build_conll_datasets

        return build_conll_datasets(recipe)
    from forge.data.pipeline import build_datasets

    return build_datasets(recipe, tokenizer=tokenizer, progress=progress)


def run_recipe(resolved: ResolvedRecipe, plan: Plan, *, resume: ResumeMode = "auto", progress: bool = True,
               callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Train as the plan says and return the run's summary (also written to `<run_dir>/summary.json`).

    resume: auto (continue from the newest complete checkpoint if there is one), always (fail without one),
    never (move an existing run directory aside and start fresh). Extra trainer callbacks may be passed.

    Each stage returns a frozen record; `record` (the summary so far, the notes, the tracker) is what they add to.
    A run directory that cannot be resumed as asked raises before anything is recorded; from then on, whatever
    stops the run is recorded in summary.json as a failed or interrupted run (`_recorded_if_it_fails`).
    """
    recipe = resolved.recipe
    record = _open_run_dir(resolved, plan, resume, progress)
    with _recorded_if_it_fails(record):
        parent = _continued_adapter(plan, record)
        data = _prepare_data(recipe, plan, record)
        switches = _decide_switches(recipe, plan, record)
        model = _prepare_model(recipe, plan, data, switches, record)
        switches = _fit_memory(recipe, model, switches, record)
        setup = _trainer_setup(recipe, plan, model, switches, data, record)
        _start_tracking(resolved, plan, parent, record)
        training = _make_trainer(recipe, plan, model, switches, setup, data, record, callbacks)
        status = _train(training, record)
        adapter = _save_adapter(recipe, plan, training, data, status, record)
        return _summarize(model, setup, switches, data, training, status, adapter, record)


@dataclass(frozen=True)
class RunStart:
    """Where the run writes and what this session starts from."""

    run_dir: Path
    started: float
    rank: int
    world: int
    progress: bool  # this process prints progress (rank 0 alone, under a multi-process launch)
    checkpoint: Path | None  # the newest complete checkpoint this session resumes from
    previous: dict[str, Any]  # summary.json as the last session left it
    digests: dict[str, str]  # the data files' SHA-256 (rank 0 alone reads them)

    @property
    def main(self) -> bool:
        """Rank 0: under a multi-process launch it alone logs, prints and writes the run's files."""
        return self.rank == 0


@dataclass
class RunRecord:
    """The run as summary.json tells it so far: the one record the stages change (the crash path writes it as it
    stands), with the notes for the summary block and what the crash path must close (tracker, progress bar)."""

    start: RunStart
    summary: dict[str, Any]
    notes: list[str]
    tracker: Any = None
    bar: Any = None

    def save(self) -> None:
        if self.start.main:
            write_json(self.start.run_dir / "summary.json", self.summary)

    def say(self, text: str) -> None:
        if self.start.progress:
            print(text, flush=True)


def _open_run_dir(resolved: ResolvedRecipe, plan: Plan, resume: ResumeMode, progress: bool) -> RunRecord:
    """The run directory: resumed from its newest complete checkpoint, or fresh (an old one moved aside); the
    recipe, plan and a `running` summary written into it."""
    recipe = resolved.recipe
    started = time.time()
    run_dir = Path(plan.run_dir).resolve()
    rank, world = process_rank()
    main = rank == 0
    notes: list[str] = list(plan.notes)
    previous = read_json(run_dir / "summary.json")
    digests = source_digests(recipe.data.sources) if main else {}
    checkpoint = prepare_run_dir(run_dir, resume, notes, sources_sha256=digests if main else None,
                                 plan=plan.to_dict() if main else None)
    if main:
        write_text(run_dir / "recipe.yaml", resolved.yaml_text)
        write_json(run_dir / "plan.json", plan.to_dict())
    start = RunStart(run_dir=run_dir, started=started, rank=rank, world=world, progress=progress and main,
                     checkpoint=checkpoint, previous=previous, digests=digests)
    record = RunRecord(start, {"status": "running", "run_name": recipe.run.name, "run_dir": str(run_dir),
                               "resumed_from": str(checkpoint) if checkpoint else None, "started_at": started,
                               "world_size": world, "data": {"sources_sha256": digests}}, notes)
    record.save()
    return record


@contextlib.contextmanager
def _recorded_if_it_fails(record: RunRecord) -> Iterator[None]:
    """The crash path, around every stage after the run directory's: whatever is raised (an error, Ctrl-C,
    SystemExit) is recorded in summary.json as a failed or interrupted run, with the complete checkpoints that
    stay for a resume, and raised again (the CLI turns a ForgeError into one line and exit 2). metrics.jsonl was
    written line by line, and nothing here deletes a checkpoint."""
    try:
        yield
    except BaseException as e:
        if record.bar is not None:
            record.bar.close()
        interrupted = isinstance(e, KeyboardInterrupt)
        record.summary.update(status="interrupted" if interrupted else "failed", error=str(e) or type(e).__name__,
                              exception=type(e).__name__, exit_code=130 if interrupted else 1,
                              wall_seconds=round(time.time() - record.start.started, 2),
                              peak_memory_bytes=peak_memory_bytes(), notes=record.notes,
                              **checkpoint_info(record.start.run_dir / "checkpoints"))
        if record.tracker:
            record.tracker.finish(record.summary["status"])
            record.summary.update(tracking=record.tracker.summary(), mlflow_run_id=record.tracker.run_id)
        try:
            record.save()
        except OSError:  # a full disk: the summary keeps its last state; the error that stopped the run goes up
            pass
        raise


def _continued_adapter(plan: Plan, record: RunRecord) -> Any:
    """The adapter a continued run starts from (model.adapter; forge.model.continued.Parent), recorded as its
    parent, or None."""
    parent = _parent(plan)
    if parent is not None:
        record.summary["parent"] = parent.to_dict()
        record.notes.append(f"continuing the adapter {parent.adapter}" + (
            f" (run {parent.run_name}, validation loss {parent.eval_loss:.4f})"
            if parent.run_name and parent.eval_loss is not None else ""))
    return parent


@dataclass(frozen=True)
class RunData:
    """The tokenizer and the recipe's examples as the trainer takes them."""

    tokenizer: LoadedTokenizer
    bundle: Any  # the data layer's splits and reading statistics
    train: Any
    validation: Any | None  # None when there are no validation examples
    labels: list[str] | None  # a token classifier's labels, from its data


def _prepare_data(recipe: Recipe, plan: Plan, record: RunRecord) -> RunData:
    """The tokenizer (4-bit/8-bit without CUDA is refused here, before anything is read), then the recipe's
    papers as train/validation rows."""
    from forge.model.load import prepare_tokenizer

    tokenizer = prepare_tokenizer(plan.model, plan.quantization)
    bundle = load_data(recipe, tokenizer.tokenizer, record.start.progress)
    validation = _trainer_rows(bundle.validation, plan)
    labels = (list(bundle.train.features["tags"].feature.names)  # the classifier's labels come from its data
              if plan.model.task == "token_classification" else None)
    return RunData(tokenizer, bundle, _trainer_rows(bundle.train, plan),
                   None if validation is not None and len(validation) == 0 else validation, labels)


@dataclass(frozen=True)
class Switches:
    """What this machine runs the plan with: the speed switches (forge/train/speed.py) and activation
    checkpointing, then (after loading) training.memory's plan for the device and the FLOPs per token."""

    cuda: bool
    speed: Speed
    checkpointing: bool
    checkpointing_kwargs: dict[str, Any] | None
    sharded: bool  # ZeRO-3 or FSDP shard the parameters: the model loads without a device map
    memory_planned: bool  # training.memory plans this run (one process, CUDA, a causal LM)
    memory_plan: MemoryPlan | None = None  # once the model is loaded
    flops: Any = None
    peak_flops: Any = None


def _decide_switches(recipe: Recipe, plan: Plan, record: RunRecord) -> Switches:
    """The speed switches for this machine; a GPU too crowded for even training.memory's smallest setting stops
    here, before minutes of loading."""
    import torch

    from forge.train import memory as memory_module
    from forge.train.speed import decide as decide_speed

    cuda, world = torch.cuda.is_available(), record.start.world
    checkpointing = bool(plan.trainer.get("activation_checkpointing", plan.trainer.get("gradient_checkpointing")))
    sharded, strategy = plan.launch.shards_parameters, plan.launch.strategy
    speed = decide_speed(plan.trainer.get("speed"), cuda=cuda, task=plan.model.task,
                         gradient_checkpointing=checkpointing, quantized=plan.quantization is not None,
                         engine=strategy, lora=plan.lora is not None,
                         dora=plan.lora is not None and plan.lora.use_dora,
                         zero3=sharded and strategy == "deepspeed",
                         tokens=None if recipe.training.micro_batch_size == "auto" else
                         plan.trainer["per_device_train_batch_size"] * plan.trainer["max_length"])
    memory_planned = memory_module.planned(recipe, cuda=cuda, engine=strategy, world=world)
    if memory_planned:
        record.notes.extend(filter(None, [memory_module.check_before_load(recipe, speed, plan.estimate)]))
    kwargs = plan.trainer.get("activation_checkpointing_kwargs", plan.trainer.get("gradient_checkpointing_kwargs"))
    return Switches(cuda=cuda, speed=speed, checkpointing=checkpointing, checkpointing_kwargs=kwargs,
                    sharded=sharded, memory_planned=memory_planned)


def _prepare_model(recipe: Recipe, plan: Plan, data: RunData, switches: Switches, record: RunRecord) -> LoadedModel:
    """Base weights, quantization, kernels and LoRA, as forge.model.load.LoadedModel; the attention kernel is the
    speed switches' choice."""
    from forge.model.load import load_for_training
    from forge.train.speed import apply_liger, attention_for, compile_regions, fuse_lora

    speed = switches.speed
    attention = attention_for(speed, plan.model.attn_implementation, cuda=switches.cuda,
                              packing=bool(plan.trainer.get("packing")))
    plan_model = dataclasses.replace(plan.model, attn_implementation=attention,
                                     labels=None if data.labels is None else tuple(data.labels))
    with quiet_library_bars():
        loaded = load_for_training(plan_model, plan.lora, plan.quantization, data.tokenizer, seed=recipe.run.seed,
                                   gradient_checkpointing=switches.checkpointing,
                                   gradient_checkpointing_kwargs=switches.checkpointing_kwargs,
                                   sharded=switches.sharded, fp32_norms=speed.fp32_norms,
                                   before_lora=(lambda m: [apply_liger(m)]) if speed.liger_kernels else None)
    if speed.fused_lora:
        record.notes.append(fuse_lora(loaded.model))
    if speed.compile == "regional" and not switches.checkpointing:  # under checkpointing: inside it (_trainer_setup)
        record.notes.append(compile_regions(loaded.model))
    record.notes.extend(loaded.notes)
    return loaded


def _fit_memory(recipe: Recipe, model: LoadedModel, switches: Switches, record: RunRecord) -> Switches:
    """training.memory's plan for what is free now (which layers are checkpointed and offloaded, the
    micro-batch), the switches it turns off, and the FLOPs per token for the MFU."""
    from forge.train import memory as memory_module
    from forge.train.speed import compile_regions, hold_dense

    speed, checkpointing = switches.speed, switches.checkpointing
    memory_plan = (memory_module.plan_after_load(recipe, model.model, speed, record.notes)
                   if switches.memory_planned else None)
    if memory_plan is not None and memory_plan.choice.dense:
        record.notes.append(hold_dense(model.model, memory_plan.choice.dense))
    if memory_plan is not None and not memory_plan.choice.offloaded:
        speed = dataclasses.replace(speed, activation_offload=False)  # nothing for it to move
    if memory_plan is not None and not memory_plan.choice.checkpointed and checkpointing:
        checkpointing = False
        model.model.activation_checkpointing_disable()  # on already for a quantized model
        if speed.compile == "regional":
            record.notes.append(compile_regions(model.model))
    flops, peak_flops = memory_module.flops_for(
        recipe, model.model, cuda=switches.cuda, checkpointed=memory_plan.choice.checkpointed if memory_plan else
        None if checkpointing else 0)
    return dataclasses.replace(switches, speed=speed, checkpointing=checkpointing, memory_plan=memory_plan,
                               flops=flops, peak_flops=peak_flops)


@dataclass(frozen=True)
class TrainerSetup:
    """SFTConfig arguments for this machine, the micro-batch chosen for `auto`, and the callback that installs
    Forge's checkpoint function (offload, regional compile) or None."""

    settings: TrainerSettings
    micro: int | None
    routes: Any


def _trainer_setup(recipe: Recipe, plan: Plan, model: LoadedModel, switches: Switches, data: RunData,
                   record: RunRecord) -> TrainerSetup:
    """The micro-batch (the plan's, or the largest that fits at the same effective batch) and the trainer
    arguments: precision, activation offload, the launch's, no evaluation without validation rows."""
    import torch

    from forge.train.trainer import trainer_settings

    start, speed, memory_plan = record.start, switches.speed, switches.memory_plan
    micro, accumulation = _micro_batch(recipe, plan, model, switches, record.notes)
    settings = trainer_settings(plan.trainer, output_dir=str(start.run_dir / "checkpoints"), micro_batch=micro,
                                accumulation=accumulation, cuda=switches.cuda,
                                bf16_supported=switches.cuda and torch.cuda.is_bf16_supported(),
                                show_progress=start.progress)
    settings.args["activation_offloading"] = speed.activation_offload and switches.checkpointing
    if memory_plan is not None:  # one process: Forge's own offload, of the inputs the plan names, or none
        settings.args.update(activation_checkpointing=switches.checkpointing, activation_offloading=False)
    if settings.args["dataloader_num_workers"]:  # tokenizing is done: no fork-after-parallelism warning
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    layers = (memory_plan.choice.checkpointed, memory_plan.choice.offloaded) if memory_plan else (None, None)
    routes = _checkpoint_routes(model.model, settings, record.notes, offload=speed.activation_offload and
                                start.world == 1 and layers[1] != 0, compiled=speed.compile == "regional",
                                layers=layers) if switches.checkpointing else None
    settings.speed = record.summary["speed"] = speed.to_dict()
    _distributed_args(settings.args, plan.launch, start.run_dir, start.world)
    if data.validation is None:
        _no_validation(settings.args, record.notes)
    if start.checkpoint is not None:
        settings.args["eval_on_start"] = False  # the baseline was measured before the interruption
    return TrainerSetup(settings, micro, routes)


def _micro_batch(recipe: Recipe, plan: Plan, model: LoadedModel, switches: Switches,
                 notes: list[str]) -> tuple[int | None, int | None]:
    """(micro-batch, accumulation) for micro_batch_size auto: the memory plan's, or the largest the GPU fits (1
    on the CPU), at the same effective batch; (None, None) keeps the plan's."""
    from forge.train.micro_batch import choose_micro_batch, cuda_probe

    if recipe.training.micro_batch_size != "auto":
        return None, None
    effective = recipe.training.effective_batch_size or plan.trainer["gradient_accumulation_steps"]
    if switches.memory_plan is not None:
        micro = switches.memory_plan.choice.micro_batch
    else:
        fits = cuda_probe(model.model, plan.trainer["max_length"], len(model.tokenizer),
                          gradient_checkpointing=switches.checkpointing,
                          gradient_checkpointing_kwargs=switches.checkpointing_kwargs) if switches.cuda else None
        micro = choose_micro_batch(effective, cuda=switches.cuda, fits=fits)
    notes.append(f"micro_batch_size auto: {micro} x {effective // micro} accumulation = {effective} per step")
    return micro, effective // micro


def _start_tracking(resolved: ResolvedRecipe, plan: Plan, parent: Any, record: RunRecord) -> None:
    """The MLflow run (rank 0), opened with the recipe, its chain, plan, git state, versions and device
    (forge/track), or a pending file when MLflow is down: tracking never stops training."""
    start = record.start
    if start.main:
        from forge.track.metadata import track_run

        record.tracker = track_run(resolved, plan, start.run_dir, resume_run_id=(
            (start.previous if start.checkpoint else None) or {}).get("mlflow_run_id"))
    record.summary["mlflow_run_id"] = record.tracker.run_id if record.tracker else None
    if record.tracker and parent is not None:
        record.tracker.set_tags(parent.tags())
    record.save()


@dataclass(frozen=True)
class Training:
    """The trainer and the Forge callbacks whose state says how training ended."""

    trainer: Any
    metrics: Any  # forge.train.callbacks.MetricsLog
    guard: Any  # NonFiniteGuard
    stopper: Any  # StopOnSignal


def _make_trainer(recipe: Recipe, plan: Plan, model: LoadedModel, switches: Switches, setup: TrainerSetup,
                  data: RunData, record: RunRecord, callbacks: list[Any] | None) -> Training:
    """SFTTrainer (or transformers' Trainer for encoders) with Forge's callbacks; prints the run's summary block."""
    from forge.train.callbacks import CheckpointMarker, MetricsLog, NonFiniteGuard
    from forge.train.losses import loss_function
    from forge.train.progress import ProgressBar
    from forge.train.signals import StopOnSignal
    from forge.train.trainer import build_trainer

    start, settings, tracker = record.start, setup.settings, record.tracker
    metrics = MetricsLog(start.run_dir / "metrics.jsonl", tracker.log_metrics if tracker else None)
    # the guard checks the norm the trainer computed for clipping this step (ForgeSFTTrainer keeps it)
    guard = NonFiniteGuard(check_gradients=settings.precision != "fp16",
                           norm=lambda: getattr(trainer, "forge_grad_norm", None))
    stopper = StopOnSignal()
    record.bar = ProgressBar(switches.flops, switches.peak_flops) if start.progress else None
    # the guard after the stopper: a step that a signal makes save waits for its gradient norm first
    forge_callbacks = [*([metrics] if start.main else []), CheckpointMarker(), stopper, guard,
                       *([record.bar] if record.bar else []), *([setup.routes] if setup.routes else [])]
    with quiet_library_bars():
        trainer = build_trainer(plan.model.task, model.model, model.tokenizer, settings, data.train,
                                data.validation, callbacks=forge_callbacks + list(callbacks or []),
                                loss_function=loss_function(settings.loss, recipe.training.loss_module))
    record.say(f"forge run {recipe.run.name}\n" + plan_summary(
        _summary_lines(plan, model, settings, trainer, data.bundle, start.run_dir, start.checkpoint, tracker,
                       switches.cuda), record.notes))
    return Training(trainer, metrics, guard, stopper)


def _train(training: Training, record: RunRecord) -> str:
    """Train (from the checkpoint this session resumes from); Ctrl-C or SIGTERM saves a checkpoint and stops
    cleanly. Returns how it ended: completed, stopped (early stopping), failed (non-finite loss) or interrupted."""
    from forge.train.signals import stop_on_signals

    start = record.start
    with stop_on_signals(training.stopper), _full_disk_in_one_line(start.run_dir):
        training.trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
    return _status(training.guard, training.stopper, training.trainer)


def _save_adapter(recipe: Recipe, plan: Plan, training: Training, data: RunData, status: str,
                  record: RunRecord) -> Path | None:
    """For a run that completed or stopped early: the final evaluation, then the adapter (or full model) with
    the tokenizer and a token classifier's labels, logged to MLflow. None for any other run."""
    if status not in ("completed", "stopped"):
        return None
    run_dir, trainer = record.start.run_dir, training.trainer
    if data.validation is not None:
        training.metrics.final = True
        trainer.evaluate()
    with _full_disk_in_one_line(run_dir):
        folder = run_dir / ("adapter" if plan.lora is not None else "model")
        adapter_path = _save_final(trainer, folder, record.start.main)
        if record.start.main and data.labels:  # an adapter folder has no config to hold them
            from forge.model.labels import save_labels

            save_labels(adapter_path, data.labels)
    if record.tracker:
        record.tracker.log_adapter(adapter_path, log_files=recipe.tracking.log_adapter,
                                   results=_validation_results(run_dir))
    return adapter_path


def _summarize(model: LoadedModel, setup: TrainerSetup, switches: Switches, data: RunData, training: Training,
               status: str, adapter_path: Path | None, record: RunRecord) -> dict[str, Any]:
    """The run's summary (summary.json, and each rank's peak memory under a launch), its end in MLflow, and the
    final line."""
    from forge.train import memory as memory_module

    start, summary, tracker, trainer = record.start, record.summary, record.tracker, training.trainer
    if status == "failed":
        last = checkpoint_info(start.run_dir / "checkpoints")["last_checkpoint"]
        summary["error"] = (f"training stopped at step {training.guard.failed_step}: {training.guard.reason}; the "
                            f"last good checkpoint is {last or 'none'} (lower optimizer.lr, keep max_grad_norm on, "
                            "or check the data)")
        record.say(f"forge: {summary['error']}")
    if status == "interrupted":
        summary["exit_code"] = training.stopper.exit_code
        record.say(f"forge: interrupted at step {trainer.state.global_step}; checkpoint saved, run again to resume")
    summary.update(_results(start.run_dir, trainer, training.metrics, model, data.bundle, setup.settings,
                            setup.micro or 0, start.started))
    summary["flops"] = memory_module.flops_summary(switches.flops, switches.peak_flops,
                                                   summary.get("tokens_per_second"))
    if switches.memory_plan is not None:
        summary["memory"] = switches.memory_plan.summary(summary.get("peak_memory_bytes"))
    if start.world > 1:  # each rank's own peak; `forge run` gathers them into summary.json once all have exited
        write_json(start.run_dir / "ranks" / f"{start.rank}.json",
                   {"rank": start.rank, "peak_memory_bytes": peak_memory_bytes(),
                    "peak_memory_reserved_bytes": peak_reserved_bytes()})
    summary["data"]["sources_sha256"] = start.digests
    summary.update(status=status, adapter_path=str(adapter_path) if adapter_path else None,
                   notes=record.notes, tracking=tracker.summary() if tracker else {"status": "disabled"})
    summary.setdefault("exit_code", EXIT_CODES.get(status, 1))
    if tracker:
        tracker.finish(status)
        summary.update(tracking=tracker.summary(), mlflow_run_id=tracker.run_id)
    record.save()
    if status in ("completed", "stopped"):
        record.say(_final_line(summary))
    return summary


@contextlib.contextmanager
def _full_disk_in_one_line(run_dir: Path) -> Iterator[None]:
    """A full disk while training or saving becomes one line naming the folder and the checkpoint a new run
    resumes from. The writers report it in their own ways: OSError (ENOSPC), torch.save's RuntimeError,
    safetensors' SafetensorError ("No space left on device (os error 28)")."""
    try:
        yield
    except Exception as e:
        if not (isinstance(e, (OSError, RuntimeError)) or "No space left" in str(e)) or not disk_full(e, run_dir):
            raise
        last = checkpoint_info(run_dir / "checkpoints")["last_checkpoint"]
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ForgeRuntimeError(
            f"the disk filled up while training wrote to {run_dir} ({reason})",
            f"free some space in {run_dir.parent} and run again: Forge resumes from {last or 'the start'}",
            doc="disk-full") from e


def _parent(plan: Plan) -> Any:
    """The adapter a continued run starts from (forge.model.continued.Parent), or None."""
    if not plan.model.adapter or plan.lora is None:
        return None
    from forge.model.continued import find_parent

    return find_parent(plan.model.adapter)


def _validation_results(run_dir: Path) -> dict[str, float]:
    """The last validation loss, for the model version registered at the end of training."""
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval_loss" in r]
    return {"validation_loss": float(evals[-1]["eval_loss"])} if evals else {}


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process under accelerate/torchrun; (0, 1) when run on its own."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _distributed_args(args: dict[str, Any], launch: LaunchPlan, run_dir: Path, world: int) -> None:
    """Trainer arguments that depend on the launch: the DeepSpeed config file, DDP's unused-parameter scan."""
    own = launch.config_file
    if launch.strategy == "deepspeed" and not (own and not own.endswith(".json")):
        args["deepspeed"] = own or str(run_dir / "deepspeed.json")  # a .yaml of the user's is accelerate's
    if world > 1 and launch.strategy == "ddp":
        args["ddp_find_unused_parameters"] = False  # LoRA freezes most weights; the scan would cost a pass
    if world > 1 and not args.get("bf16") and not args.get("fp16") and not _cuda():
        args["use_cpu"] = True  # only then does accelerate set up gloo DDP on the CPU (else each rank trains alone)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _drop_paper_id(dataset: Any) -> Any:
    if dataset is None:
        return None
    return dataset.remove_columns([c for c in ("paper_id",) if c in dataset.column_names])


def _trainer_rows(dataset: Any, plan: Plan) -> Any:
    """The split as the trainer takes it: without paper ids; chat rows trained on the assistant's turn only
    (completion_only_loss) become conversational prompt/completion rows, whose prompt TRL masks out of the
    loss with any chat template (a `messages` row would train on the whole conversation)."""
    dataset = _drop_paper_id(dataset)
    if dataset is None or "messages" not in dataset.column_names or not plan.trainer.get("completion_only_loss"):
        return dataset

    def split(row: dict[str, Any]) -> dict[str, Any]:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        return {"prompt": messages[:last], "completion": messages[last:]}

    return dataset.map(split, remove_columns=["messages"])


def _no_validation(args: dict[str, Any], notes: list[str]) -> None:
    if args.get("eval_strategy", "no") != "no":
        notes.append("no validation examples: evaluation and best-checkpoint selection are off")
    args.update(eval_strategy="no", eval_steps=None, load_best_model_at_end=False, metric_for_best_model=None,
                greater_is_better=None, eval_on_start=False)


def _status(guard: Any, stopper: Any, trainer: Any) -> str:
    if guard.failed_step is not None:
        return "failed"
    if stopper.signal is not None:
        return "interrupted"
    from transformers import EarlyStoppingCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EarlyStoppingCallback) and \
                callback.early_stopping_patience_counter >= callback.early_stopping_patience:
            return "stopped"
    return "completed"


def _save_final(trainer: Any, target: Path, main: bool = True) -> Path:
    """The final adapter (or full model) and tokenizer, written beside the target and renamed into place.
    Every process takes part (ZeRO-3 gathers the weights); rank 0 alone writes and renames."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        as_umask_allows(staging, directory=True)
        trainer.save_model(str(staging))
        if main and target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.rename(target, old)
            os.rename(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        elif main:
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _checkpoint_routes(model: Any, settings: Any, notes: list[str], *, offload: bool, compiled: bool,
                       layers: tuple[int | None, int | None] = (None, None)) -> Any:
    """Forge's own checkpoint function for the checkpointed layers: their inputs offloaded (in place of TRL's
    offload; one process, since DDP's gradient hooks do not expect the recompute inside the backward pass), their
    forward compiled (regional compile), or both. Returns the callback that installs it again when training
    begins, or None where it is not needed or no layer is checkpointed."""
    import torch

    from forge.train import offload as offload_module
    from forge.train.speed import compile_regions

    checkpointed, offloaded = layers  # training.memory's plan: the first n layers checkpointed, the first m offloaded
    if not (offload or compiled or checkpointed is not None):
        return None
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    installer = offload_module.Installer(model, device, offload=offload, compiled=compiled, checkpointed=checkpointed,
                                         offloaded=offloaded)
    # checkpointing is on already for a quantized model; the trainer turns it on for the others (the callback
    # installs then)
    layers = installer.install() or installer.checkpointable()
    if not layers:
        if compiled:
            notes.append(compile_regions(model))
        return None
    if offload:
        settings.args["activation_offloading"] = False
        notes.append(f"activation_offload: the inputs of {offloaded if offloaded is not None else layers} "
                     "checkpointed layers kept in pinned CPU memory, copied on side streams")
    if compiled:
        notes.append(f"compile: {layers} decoder layers compiled (regional, inside their checkpoints)")
    return installer.callback()


def _results(run_dir: Path, trainer: Any, metrics: Any, loaded: Any, bundle: Any, settings: Any, micro: int,
             started: float) -> dict[str, Any]:
    """The numbers of the summary, read back from metrics.jsonl so that they span resumed sessions."""
    lines = read_jsonl(run_dir / "metrics.jsonl")
    train = [r for r in lines if r.get("kind") == "train" and "loss" in r]
    evals = [r for r in lines if r.get("kind") in ("eval", "final_eval") and "eval_loss" in r]
    eval_summary = None
    if evals:
        first, last = evals[0], evals[-1]
        eval_summary = {"loss": last["eval_loss"], "perplexity": _perplexity(last["eval_loss"]),
                        "first_loss": first["eval_loss"], "first_perplexity": _perplexity(first["eval_loss"]),
                        "first_step": first["step"], "evaluations": len(evals)}
        if "eval_entity_f1" in last:  # a token classifier's entity-level scores (seqeval, strict IOB2)
            eval_summary.update({k: last[f"eval_{k}"] for k in ("entity_precision", "entity_recall", "entity_f1")
                                 if f"eval_{k}" in last})
    if hasattr(trainer, "settle_metrics"):  # tokens seen since the last logging step
        trainer.settle_metrics()
    state = trainer.state
    return {
        "steps": state.global_step,
        "max_steps": state.max_steps,
        "epoch": round(state.epoch or 0.0, 4),
        "train_loss_first": train[0]["loss"] if train else None,
        "train_loss_last": train[-1]["loss"] if train else None,
        "eval": eval_summary,
        "best_checkpoint": state.best_model_checkpoint,
        **checkpoint_info(run_dir / "checkpoints"),
        "peak_memory_bytes": peak_memory_bytes(),
        "peak_memory_reserved_bytes": peak_reserved_bytes(),
        "tokens_per_second": metrics.tokens_per_second,
        "tokens_seen": state.num_input_tokens_seen,
        "params": loaded.params.to_dict(),
        "trainable_params": loaded.params.trainable,
        "total_params": loaded.params.total,
        "model_source": loaded.source,
        "dtype": loaded.dtype,
        "precision": settings.precision,
        "micro_batch_size": trainer.args.per_device_train_batch_size,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "data": {"train_examples": len(trainer.train_dataset),
                 "validation_examples": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
                 **_stats(bundle)},
        "wall_seconds": round(time.time() - started, 2),
    }


def _stats(bundle: Any) -> dict[str, Any]:
    stats = getattr(bundle, "stats", None)
    if hasattr(stats, "to_dict"):
        return stats.to_dict()
    return dict(stats or {})


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 50 else math.inf


def _summary_lines(plan: Plan, loaded: Any, settings: Any, trainer: Any, bundle: Any, run_dir: Path,
                   checkpoint: Path | None, tracker: Any, cuda: bool) -> list[tuple[str, str]]:
    import torch

    a = trainer.args
    lora = plan.lora
    quant = plan.quantization
    steps = _planned_steps(a, len(trainer.train_dataset))
    device = f"cuda ({torch.cuda.get_device_name()})" if cuda else f"cpu ({torch.get_num_threads()} threads)"
    n_val = len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0
    return [
        ("run dir", f"{run_dir}" + (f" (resuming from {checkpoint.name})" if checkpoint else "")),
        ("model", f"{plan.model.name_or_path} [{plan.model.task}, {loaded.dtype}]"),
        ("parameters", loaded.params.describe()),
        ("adapters", f"LoRA r={lora.r} alpha={lora.lora_alpha} on {lora.target_modules}" if lora is not None
         else "none (full fine-tuning)"),
        ("quantization", "4-bit " + quant.bnb_4bit_quant_type if isinstance(quant, FourBitPlan)
         else "8-bit" if quant is not None else "none"),
        ("data", f"{len(trainer.train_dataset)} train / {n_val} validation examples"),
        ("papers", _papers_line(bundle)),
        ("batch", f"{a.per_device_train_batch_size} x {a.gradient_accumulation_steps} accumulation, "
                  f"max_length {plan.trainer.get('max_length')}"),
        ("schedule", f"{steps} steps, {_name(a.optim)} lr {a.learning_rate:g} {_name(a.lr_scheduler_type)}"),
        ("device", f"{device}, precision {settings.precision}, gradient checkpointing "
                   f"{'on' if a.gradient_checkpointing else 'off'}"),
        ("speed", speed_line(settings, a)),
        ("tracking", f"{tracker.uri} ({tracker.status})" if tracker else "off"),
    ]


def _papers_line(bundle: Any) -> str:
    """What reading found: files by format, files skipped, bad records and dropped annotations (listed by name
    in summary.json under data.bad_examples and data.warning_examples)."""
    stats = _stats(bundle)
    if "papers_read" not in stats:
        return "?"
    from forge.data.readers import files_line

    line = f"{stats['papers_read']} read; " + files_line(len(stats.get("sources") or []),
                                                         stats.get("files_by_format") or {},
                                                         stats.get("skipped_files") or [])
    if stats.get("bad_records") or stats.get("warnings"):
        line += (f"; {stats.get('bad_records', 0)} bad records, {stats.get('warnings', 0)} annotations dropped "
                 "(named in summary.json)")
    return line


def speed_line(settings: Any, args: Any) -> str:
    from forge.train.speed import Speed

    text = Speed(**(settings.speed or {})).describe()
    return text + ("; packing" if getattr(args, "packing", False) else "")


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _planned_steps(args: Any, n_train: int) -> int:
    if args.max_steps and args.max_steps > 0:
        return int(args.max_steps)
    batches = math.ceil(n_train / args.per_device_train_batch_size)
    per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
    return math.ceil(args.num_train_epochs * per_epoch)


def _final_line(summary: dict[str, Any]) -> str:
    text = f"forge: {summary['status']} after {summary['steps']} steps in {summary['wall_seconds']:.0f}s"
    ev = summary.get("eval")
    if ev and "entity_f1" in ev:  # a token classifier: its perplexity would mean nothing
        text += f"; validation loss {ev['first_loss']:.3f} -> {ev['loss']:.3f}, entity F1 {ev['entity_f1']:.3f}"
    elif ev:
        text += (f"; validation loss {ev['first_loss']:.3f} -> {ev['loss']:.3f} "
                 f"(perplexity {ev['first_perplexity']:.1f} -> {ev['perplexity']:.1f})")
    text += f"; peak memory {human_bytes(summary['peak_memory_bytes'])}"
    if summary.get("memory"):
        text += f" (predicted {human_bytes(summary['memory']['predicted_peak_bytes'])})"
    if (summary.get("flops") or {}).get("mfu"):
        text += f"; MFU {summary['flops']['mfu']:.1%}"
    text += f"; adapter in {summary['adapter_path']}"
    return text

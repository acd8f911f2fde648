"""`forge run`, executed: one function that takes a resolved recipe and its Plan through a whole training run,
top to bottom: run directory and resume, tokenizer, data, model, batch size, tracking, trainer, training,
final evaluation, adapter, summary.

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
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Protocol

from forge.data.readers import source_digests
from forge.file_modes import as_umask_allows
from forge.model.errors import ForgeRuntimeError
from forge.model.report import human_bytes, peak_memory_bytes, peak_reserved_bytes
from forge.plan import Plan
from forge.recipe.schema import Recipe
from forge.atomic import disk_full, read_json, read_jsonl, write_json, write_text
from forge.train.checkpoints import ResumeMode, checkpoint_info, prepare_run_dir
from forge.train.progress import plan_summary, quiet_library_bars

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
    """
    recipe = resolved.recipe
    started = time.time()
    run_dir = Path(plan.run_dir).resolve()
    rank, world = process_rank()
    main = rank == 0  # under a multi-process launch, rank 0 alone logs, prints and writes the run's files
    progress = progress and main
    say = _printer(progress)
    notes: list[str] = list(plan.notes)

    def save_summary() -> None:
        if main:
            write_json(run_dir / "summary.json", summary)

    # 1. The run directory: resume from its newest complete checkpoint, or start fresh
    previous = read_json(run_dir / "summary.json")
    digests = source_digests(recipe.data.sources) if main else {}
    checkpoint = prepare_run_dir(run_dir, resume, notes, sources_sha256=digests if main else None,
                                 plan=plan.to_dict() if main else None)
    if main:
        write_text(run_dir / "recipe.yaml", resolved.yaml_text)
        write_json(run_dir / "plan.json", plan.to_dict())
    summary: dict[str, Any] = {"status": "running", "run_name": recipe.run.name, "run_dir": str(run_dir),
                               "resumed_from": str(checkpoint) if checkpoint else None, "started_at": started,
                               "world_size": world, "data": {"sources_sha256": digests}}
    save_summary()
    tracker = None
    bar: Any = None
    try:
        import torch

        from forge.model.load import load_for_training, prepare_tokenizer
        from forge.train.micro_batch import choose_micro_batch, cuda_probe
        from forge.train.speed import apply_liger, attention_for, compile_regions, fuse_lora
        from forge.train.speed import decide as decide_speed
        from forge.train.trainer import build_trainer, trainer_settings

        cuda = torch.cuda.is_available()
        seed = recipe.run.seed
        checkpointing = bool(plan.trainer.get("activation_checkpointing", plan.trainer.get("gradient_checkpointing")))
        checkpointing_kwargs = plan.trainer.get("activation_checkpointing_kwargs",
                                                plan.trainer.get("gradient_checkpointing_kwargs"))

        # 2. Tokenizer (4-bit/8-bit without CUDA is refused here, before anything is read); the adapter a
        # continued run starts from (model.adapter), recorded as its parent
        parent = _parent(plan)
        if parent is not None:
            summary["parent"] = parent.to_dict()
            notes.append(f"continuing the adapter {parent.adapter}" + (
                f" (run {parent.run_name}, validation loss {parent.eval_loss:.4f})"
                if parent.run_name and parent.eval_loss is not None else ""))
        tokenizer = prepare_tokenizer(plan.model, plan.quantization)

        # 3. Data: the recipe's papers as train/validation examples
        bundle = load_data(recipe, tokenizer.tokenizer, progress)
        train = _trainer_rows(bundle.train, plan)
        validation = _trainer_rows(bundle.validation, plan)
        if validation is not None and len(validation) == 0:
            validation = None

        # 4. Model: base weights, quantization, speed switches, LoRA
        sharded = sharded_engine(plan.launch)
        speed = decide_speed(plan.trainer.get("speed"), cuda=cuda, task=plan.model["task"],
                             gradient_checkpointing=checkpointing, quantized=bool(plan.quantization),
                             engine=plan.launch.get("strategy", "none"), lora=bool(plan.lora),
                             dora=bool((plan.lora or {}).get("use_dora")),
                             zero3=sharded and plan.launch.get("strategy") == "deepspeed",
                             tokens=None if recipe.training.micro_batch_size == "auto" else
                             plan.trainer["per_device_train_batch_size"] * plan.trainer["max_length"])
        from forge.train import memory as memory_module

        # training.memory: a GPU too crowded for even the smallest setting stops here, before minutes of loading
        memory_planned = memory_module.planned(recipe, cuda=cuda, engine=plan.launch.get("strategy", "none"),
                                               world=world)
        if memory_planned:
            notes += filter(None, [memory_module.check_before_load(recipe, speed, plan.estimate)])
        plan_model = {**plan.model, "attn_implementation": attention_for(
            speed, plan.model.get("attn_implementation"), cuda=cuda, packing=bool(plan.trainer.get("packing")))}
        if plan.model["task"] == "token_classification":  # the classifier's labels come from its data
            plan_model["labels"] = list(bundle.train.features["tags"].feature.names)
        with quiet_library_bars():
            loaded = load_for_training(plan_model, plan.lora, plan.quantization, tokenizer, seed=seed,
                                       gradient_checkpointing=checkpointing,
                                       gradient_checkpointing_kwargs=checkpointing_kwargs,
                                       sharded=sharded, fp32_norms=speed.fp32_norms,
                                       before_lora=(lambda m: [apply_liger(m)]) if speed.liger_kernels else None)
        if speed.fused_lora:
            notes.append(fuse_lora(loaded.model))
        if speed.compile == "regional" and not checkpointing:  # under checkpointing: inside it (below)
            notes.append(compile_regions(loaded.model))
        notes += loaded.notes
        # training.memory: which layers are checkpointed and offloaded, and the micro-batch, for what is free now
        memory_plan = memory_module.plan_after_load(recipe, loaded.model, speed, notes) if memory_planned else None
        if memory_plan is not None and not memory_plan.choice.offloaded:
            speed = dataclasses.replace(speed, activation_offload=False)  # nothing for it to move
        if memory_plan is not None and not memory_plan.choice.checkpointed and checkpointing:
            checkpointing = False
            loaded.model.activation_checkpointing_disable()  # on already for a quantized model
            if speed.compile == "regional":
                notes.append(compile_regions(loaded.model))

        flops, peak_flops = memory_module.flops_for(
            recipe, loaded.model, cuda=cuda, checkpointed=memory_plan.choice.checkpointed if memory_plan else
            None if checkpointing else 0)

        # 5. Micro-batch: the plan's, or the largest that fits (same effective batch)
        micro, accumulation = None, None
        if recipe.training.micro_batch_size == "auto" and memory_plan is not None:
            effective = recipe.training.effective_batch_size or plan.trainer["gradient_accumulation_steps"]
            micro, accumulation = memory_plan.choice.micro_batch, effective // memory_plan.choice.micro_batch
            notes.append(f"micro_batch_size auto: {micro} x {accumulation} accumulation = {effective} per step")
        elif recipe.training.micro_batch_size == "auto":
            effective = recipe.training.effective_batch_size or plan.trainer["gradient_accumulation_steps"]
            fits = cuda_probe(loaded.model, plan.trainer["max_length"], len(loaded.tokenizer),
                              gradient_checkpointing=checkpointing,
                              gradient_checkpointing_kwargs=checkpointing_kwargs) if cuda else None
            micro = choose_micro_batch(effective, cuda=cuda, fits=fits)
            accumulation = effective // micro
            notes.append(f"micro_batch_size auto: {micro} x {accumulation} accumulation = {effective} per step")
        settings = trainer_settings(plan.trainer, output_dir=str(run_dir / "checkpoints"), micro_batch=micro,
                                    accumulation=accumulation, cuda=cuda,
                                    bf16_supported=cuda and torch.cuda.is_bf16_supported(), show_progress=progress)
        settings.args["activation_offloading"] = speed.activation_offload and checkpointing
        if memory_plan is not None:  # one process: Forge's own offload, of the inputs the plan names, or none
            settings.args.update(activation_checkpointing=checkpointing, activation_offloading=False)
        if settings.args["dataloader_num_workers"]:  # tokenizing is done: no fork-after-parallelism warning
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        layers = (memory_plan.choice.checkpointed, memory_plan.choice.offloaded) if memory_plan else (None, None)
        routes = _checkpoint_routes(loaded.model, settings, notes, offload=speed.activation_offload and world == 1
                                    and layers[1] != 0, compiled=speed.compile == "regional",
                                    layers=layers) if checkpointing else None
        settings.speed = summary["speed"] = speed.to_dict()
        _distributed_args(settings.args, plan.launch, run_dir, world)
        if validation is None:
            _no_validation(settings.args, notes)
        if checkpoint is not None:
            settings.args["eval_on_start"] = False  # the baseline was measured before the interruption

        # 6. Tracking: MLflow, or a pending file when MLflow is down (never stops training)
        tracker = _start_tracking(resolved, plan, run_dir, previous if checkpoint else None) if main else None
        summary["mlflow_run_id"] = tracker.run_id if tracker else None
        if tracker and parent is not None:
            tracker.set_tags(parent.tags())
        save_summary()

        # 7. Trainer: SFTTrainer with Forge's callbacks
        from forge.train.callbacks import CheckpointMarker, MetricsLog, NonFiniteGuard
        from forge.train.losses import loss_function
        from forge.train.progress import ProgressBar
        from forge.train.signals import StopOnSignal, stop_on_signals

        metrics = MetricsLog(run_dir / "metrics.jsonl", tracker.log_metrics if tracker else None)
        # the guard checks the norm the trainer computed for clipping this step (ForgeSFTTrainer keeps it)
        guard = NonFiniteGuard(check_gradients=settings.precision != "fp16",
                               norm=lambda: getattr(trainer, "forge_grad_norm", None))
        stopper = StopOnSignal()
        bar = ProgressBar(flops, peak_flops) if progress else None
        # the guard after the stopper: a step that a signal makes save waits for its gradient norm first
        forge_callbacks = [*([metrics] if main else []), CheckpointMarker(), stopper, guard,
                           *([bar] if bar else []), *([routes] if routes else [])]
        with quiet_library_bars():
            trainer = build_trainer(plan.model["task"], loaded.model, loaded.tokenizer, settings, train, validation,
                                    loss_function=loss_function(settings.loss, recipe.training.loss_module),
                                    callbacks=forge_callbacks + list(callbacks or []))
        say(f"forge run {recipe.run.name}\n" + plan_summary(
            _summary_lines(plan, loaded, settings, trainer, bundle, run_dir, checkpoint, tracker, cuda), notes))

        # 8. Train; Ctrl-C or SIGTERM saves a checkpoint and stops cleanly
        with stop_on_signals(stopper), _full_disk_in_one_line(run_dir):
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        status = _status(guard, stopper, trainer)

        # 9. Final evaluation and the adapter (only for a run that finished or stopped early)
        adapter_path = None
        if status in ("completed", "stopped"):
            if validation is not None:
                metrics.final = True
                trainer.evaluate()
            with _full_disk_in_one_line(run_dir):
                adapter_path = _save_final(trainer, run_dir / ("adapter" if plan.lora else "model"), main)
                if main and plan_model.get("labels"):  # an adapter folder has no config to hold them
                    from forge.model.labels import save_labels

                    save_labels(adapter_path, plan_model["labels"])
            if tracker:
                tracker.log_adapter(adapter_path, log_files=recipe.tracking.log_adapter,
                                    results=_validation_results(run_dir))
        if status == "failed":
            last = checkpoint_info(run_dir / "checkpoints")["last_checkpoint"]
            summary["error"] = (f"training stopped at step {guard.failed_step}: {guard.reason}; the last good "
                                f"checkpoint is {last or 'none'} (lower optimizer.lr, keep max_grad_norm on, "
                                "or check the data)")
            say(f"forge: {summary['error']}")
        if status == "interrupted":
            summary["exit_code"] = stopper.exit_code
            say(f"forge: interrupted at step {trainer.state.global_step}; checkpoint saved, run again to resume")

        summary.update(_results(run_dir, trainer, metrics, loaded, bundle, settings, micro or 0, started))
        summary["flops"] = memory_module.flops_summary(flops, peak_flops, summary.get("tokens_per_second"))
        if memory_plan is not None:
            summary["memory"] = memory_plan.summary(summary.get("peak_memory_bytes"))
        if world > 1:  # each rank's own peak; `forge run` gathers them into summary.json once all have exited
            write_json(run_dir / "ranks" / f"{rank}.json", {"rank": rank, "peak_memory_bytes": peak_memory_bytes(),
                                                            "peak_memory_reserved_bytes": peak_reserved_bytes()})
        summary["data"]["sources_sha256"] = digests
        summary.update(status=status, adapter_path=str(adapter_path) if adapter_path else None,
                       notes=notes, tracking=tracker.summary() if tracker else {"status": "disabled"})
        summary.setdefault("exit_code", EXIT_CODES.get(status, 1))
        if tracker:
            tracker.finish(status)
            summary.update(tracking=tracker.summary(), mlflow_run_id=tracker.run_id)
        save_summary()
        if status in ("completed", "stopped"):
            say(_final_line(summary))
        return summary
    except BaseException as e:
        if bar is not None:
            bar.close()
        interrupted = isinstance(e, KeyboardInterrupt)
        summary.update(status="interrupted" if interrupted else "failed", error=str(e) or type(e).__name__,
                       exception=type(e).__name__,
                       exit_code=130 if interrupted else 1, wall_seconds=round(time.time() - started, 2),
                       peak_memory_bytes=peak_memory_bytes(), notes=notes,
                       **checkpoint_info(run_dir / "checkpoints"))
        if tracker:
            tracker.finish(summary["status"])
            summary.update(tracking=tracker.summary(), mlflow_run_id=tracker.run_id)
        try:
            save_summary()
        except OSError:  # a full disk: the summary keeps its last state; the error that stopped the run goes up
            pass
        raise


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
    if not plan.model.get("adapter") or not plan.lora:
        return None
    from forge.model.continued import find_parent

    return find_parent(plan.model["adapter"])


def _validation_results(run_dir: Path) -> dict[str, float]:
    """The last validation loss, for the model version registered at the end of training."""
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "eval_loss" in r]
    return {"validation_loss": float(evals[-1]["eval_loss"])} if evals else {}


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process under accelerate/torchrun; (0, 1) when run on its own."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def sharded_engine(launch: dict[str, Any]) -> bool:
    """Whether the engine shards parameters (ZeRO-3, FSDP): the model then loads without a device map."""
    zero = (launch.get("deepspeed") or {}).get("zero_optimization", {}).get("stage")
    return launch.get("strategy") == "fsdp" or (launch.get("strategy") == "deepspeed" and zero == 3)


def _distributed_args(args: dict[str, Any], launch: dict[str, Any], run_dir: Path, world: int) -> None:
    """Trainer arguments that depend on the launch: the DeepSpeed config file, DDP's unused-parameter scan."""
    own = launch.get("config_file")
    if launch.get("strategy") == "deepspeed" and not (own and not own.endswith(".json")):
        args["deepspeed"] = own or str(run_dir / "deepspeed.json")  # a .yaml of the user's is accelerate's
    if world > 1 and launch.get("strategy") == "ddp":
        args["ddp_find_unused_parameters"] = False  # LoRA freezes most weights; the scan would cost a pass
    if world > 1 and not args.get("bf16") and not args.get("fp16") and not _cuda():
        args["use_cpu"] = True  # only then does accelerate set up gloo DDP on the CPU (else each rank trains alone)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _printer(progress: bool) -> Any:
    def say(text: str) -> None:
        if progress:
            print(text, flush=True)

    return say


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


def _start_tracking(resolved: ResolvedRecipe, plan: Plan, run_dir: Path, previous: dict[str, Any] | None) -> Any:
    """The MLflow run, opened with the recipe, its chain, plan, git state, versions and device (forge/track)."""
    from forge.track.metadata import track_run

    return track_run(resolved, plan, run_dir, resume_run_id=(previous or {}).get("mlflow_run_id"))


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
        ("model", f"{plan.model['name_or_path']} [{plan.model['task']}, {loaded.dtype}]"),
        ("parameters", loaded.params.describe()),
        ("adapters", f"LoRA r={lora['r']} alpha={lora['lora_alpha']} on {lora['target_modules']}" if lora
         else "none (full fine-tuning)"),
        ("quantization", "4-bit " + quant["bnb_4bit_quant_type"] if quant and quant.get("load_in_4bit")
         else "8-bit" if quant else "none"),
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

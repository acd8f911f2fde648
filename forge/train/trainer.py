"""Assemble the trainer from the Plan: SFTConfig arguments (Forge-only keys popped, mixed precision resolved
for this machine) and TRL's SFTTrainer for causal LMs, or transformers' Trainer for BERT-style encoders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from transformers import Trainer, TrainerCallback
from trl import SFTTrainer

from forge.model.errors import ForgeRuntimeError

FORGE_ONLY_KEYS = ("mixed_precision", "loss", "early_stopping", "speed", "dataloader_workers", "memory")
GPU_LOADER_WORKERS = 2
RENAMED_ARGS = {"gradient_checkpointing": "activation_checkpointing",
                "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}


@dataclass
class TrainerSettings:
    """SFTConfig keyword arguments and the Forge-only settings taken out of them."""

    args: dict[str, Any]
    precision: str  # bf16 | fp16 | no
    loss: str
    early_stopping: dict[str, Any] | None
    speed: dict[str, Any] | None = None  # the switches decided for this machine (forge/train/speed.py), set by run_recipe


def resolve_precision(mode: str, *, cuda: bool, bf16_supported: bool) -> str:
    """auto: bf16 on a GPU that has it, fp16 on an older GPU, none on the CPU."""
    if mode == "auto":
        return ("bf16" if bf16_supported else "fp16") if cuda else "no"
    if mode == "fp16" and not cuda:
        raise ForgeRuntimeError("training.mixed_precision fp16 needs a CUDA GPU",
                                "use mixed_precision: auto (or no) on the CPU", doc="no-cuda-gpu")
    if mode == "bf16" and cuda and not bf16_supported:
        raise ForgeRuntimeError("this GPU has no bfloat16 support", "use training.mixed_precision: fp16 or auto",
                                doc="no-cuda-gpu")
    return mode


def trainer_settings(plan_trainer: Mapping[str, Any], *, output_dir: str, micro_batch: int | None = None,
                     accumulation: int | None = None, cuda: bool = False, bf16_supported: bool = False,
                     show_progress: bool = True) -> TrainerSettings:
    """SFTConfig kwargs for this machine: the plan's, with precision, paths and Forge's execute settings."""
    args = dict(plan_trainer)
    forge = {key: args.pop(key, None) for key in FORGE_ONLY_KEYS}
    precision = resolve_precision(forge["mixed_precision"] or "auto", cuda=cuda, bf16_supported=bf16_supported)
    args.update(bf16=precision == "bf16", fp16=precision == "fp16", output_dir=output_dir)
    if micro_batch is not None:
        args["per_device_train_batch_size"] = args["per_device_eval_batch_size"] = micro_batch
    if accumulation is not None:
        args["gradient_accumulation_steps"] = accumulation
    for old, new in RENAMED_ARGS.items():  # transformers 5 renamed these; the old names warn
        if old in args:
            args.setdefault(new, args.pop(old))
    args["logging_nan_inf_filter"] = False  # a NaN loss must show, so the guard can stop on it
    args["disable_tqdm"] = not show_progress
    args.setdefault("eval_on_start", args.get("eval_strategy", "no") != "no")  # the baseline of the loss drop
    args.setdefault("dataloader_pin_memory", cuda)
    if cuda and args["dataloader_pin_memory"]:  # batches go to the GPU without waiting for the copy
        args.setdefault("accelerator_config", {"non_blocking": True})
    # the next batches are read, collated and pinned in worker processes while the GPU trains on this one
    workers = forge["dataloader_workers"]
    workers = (GPU_LOADER_WORKERS if cuda else 0) if workers in (None, "auto") else int(workers)
    args["dataloader_num_workers"] = workers
    if workers:
        args.update(dataloader_persistent_workers=True, dataloader_prefetch_factor=2)
    return TrainerSettings(args=args, precision=precision, loss=forge["loss"] or "causal_lm",
                           early_stopping=forge["early_stopping"])


def build_trainer(task: str, model: Any, tokenizer: Any, settings: TrainerSettings, train: Any, validation: Any,
                  *, loss_function: Any = None, callbacks: list[Any] | None = None) -> Any:
    """SFTTrainer for causal LMs; transformers' Trainer with an MLM or classification collator for encoders."""
    from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback

    callbacks = list(callbacks or [])
    if settings.early_stopping:
        if validation is None:
            raise ForgeRuntimeError("training.early_stopping needs a validation split",
                                    "set data.split.validation above 0, or turn early stopping off",
                                    doc="data-errors")
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=settings.early_stopping["patience"],
                                               early_stopping_threshold=settings.early_stopping["threshold"]))
    if task == "causal_lm":
        from trl import SFTConfig

        collator = None
        padding_free = (settings.speed or {}).get("padding_free")
        if padding_free and not settings.args.get("packing"):  # packing is padding-free in TRL already
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

            collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
        trainer = ForgeSFTTrainer(model=model, args=SFTConfig(**settings.args), train_dataset=train,
                                  eval_dataset=validation, processing_class=tokenizer, callbacks=callbacks,
                                  data_collator=collator)
        trainer.compute_loss_func = loss_function  # a user loss: one forward per step (see ForgeSFTTrainer)
    else:
        trainer = _encoder_trainer(task, model, tokenizer, settings, train, validation, loss_function, callbacks)
    for default in (ProgressCallback, PrinterCallback):  # Forge draws its own progress bar
        trainer.remove_callback(default)
    return trainer


class ForgeSFTTrainer(SFTTrainer):
    """SFTTrainer with these changes:

    - a user loss (compute_loss_func) is computed from one forward pass, as transformers' Trainer does. TRL's own
      path for it runs the model a second time for its entropy and accuracy metrics, and TRL deprecates passing
      compute_loss_func in favour of a subclass like this one;
    - the per-step metrics (entropy, token accuracy, tokens seen) stay on the device until they are logged. TRL
      and transformers read each one back at every micro-batch, and each read waits for the GPU to finish all the
      work queued so far (after the forward pass, after the backward pass), so the host cannot queue the next
      work while the GPU runs. Here they are read once per logging step, and before a checkpoint is saved;
    - the gradient norm the trainer computes for clipping is kept (`forge_grad_norm`), for the non-finite guard to
      check instead of computing its own;
    - the FLOP estimate's parameter count is taken once, and one process or DDP clips over the trainable
      parameters listed once: transformers walks every module of the model for each, at every step.

    compute_loss, floating_point_ops and log are the public hooks the trainers document for subclassing. The three
    private methods overridden below have none: each says why, and tests/train/test_trainer_overrides.py fails
    when transformers changes one of them (or the training loop's call to it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # device tensors not yet read back: entropy and accuracy per micro-batch and mode, tokens seen by TRL's
        # count (packed or padding-free rows included) and by the trainer's
        self._forge_pending: dict[str, list[Any]] = {"train": [], "eval": []}
        self._forge_train_tokens: list[Any] = []
        self._forge_tokens: list[Any] = []
        self.forge_grad_norm: Any = None
        self._forge_flop_params: tuple[Any, int] = (None, 0)  # (the model counted, its parameter count)
        self._forge_trainable: tuple[Any, list[Any]] = (None, [])  # (the model, its trainable parameters)
        self.add_callback(SettleBeforeSave(self))  # last: it sees the save decision of every other callback

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if self.compute_loss_func is not None:
            return Trainer.compute_loss(self, model, {**inputs, "use_cache": False},
                                        return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if return_outputs or not _plain_nll(self):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        return _loss_with_pending_metrics(self, model, inputs, num_items_in_batch)

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        # Private, and no public hook does it: the training loop calls this at each micro-batch, and it alone adds
        # to state.num_input_tokens_seen, reading the count back (.item(): a wait for the GPU). Counting in
        # compute_loss instead would mean include_num_input_tokens_seen "no", which also drops the count and the
        # tokens/s from the logs.
        count = _input_tokens(self, inputs)
        if count is None:
            return super()._track_num_input_tokens(inputs)
        self._forge_tokens.append(count)
        if len(self._forge_tokens) >= PENDING_LIMIT:
            _settle(self)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        # transformers counts the model's parameters at every micro-batch (a walk over every module: ~4 ms
        # on a 7B PEFT model); the count does not change while training
        if self._forge_flop_params[0] is not self.model:
            self._forge_flop_params = (self.model, _flop_parameters(self.model))
        ids = inputs.get(getattr(self.model, "main_input_name", "input_ids"))
        if ids is None or not hasattr(ids, "numel") or not self._forge_flop_params[1]:
            return super().floating_point_ops(inputs)
        return 6 * ids.numel() * self._forge_flop_params[1]

    def _clip_grad_norm(self, model: Any) -> Any:
        # Private, and no public hook does it: clipping happens here, between the backward pass and the callbacks'
        # on_pre_optimizer_step, and the norm it returns is the one logged. One process or DDP: clip over the
        # trainable parameters (kept once) rather than walking every module of the model at each step; FSDP,
        # DeepSpeed and gradients on several device meshes take transformers' path.
        from accelerate.utils import DistributedType

        if self.accelerator.distributed_type not in (DistributedType.NO, DistributedType.MULTI_GPU) or \
                self._has_mixed_mesh_grads(model):
            return super()._clip_grad_norm(model)
        if self._forge_trainable[0] is not model:
            self._forge_trainable = (model, [p for p in model.parameters() if p.requires_grad])
        return self.accelerator.clip_grad_norm_(self._forge_trainable[1], self.args.max_grad_norm)

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        # Private, and no public hook does it: the step's gradient norm (from clipping, or computed here when
        # clipping is off) goes from this method straight to the logs; no callback is given it, and the
        # non-finite guard would otherwise compute a second one.
        self.forge_grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        return self.forge_grad_norm

    def settle_metrics(self) -> None:
        """Read the pending metrics back into TRL's lists and the trainer state."""
        _settle(self)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        _settle(self)
        super().log(logs, start_time)


class SettleBeforeSave(TrainerCallback):
    """Reads a ForgeSFTTrainer's pending metrics back when the step (or epoch) about to end saves a checkpoint:
    trainer_state.json holds num_input_tokens_seen. The trainer decides to save in the callbacks' on_step_end and
    on_epoch_end (DefaultFlowCallback, the signal handler), before it writes the checkpoint."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if control.should_save:
            _settle(self.trainer)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.on_step_end(args, state, control)


def _flop_parameters(model: Any) -> int:
    """What transformers' floating_point_ops multiplies by: the parameters outside the embeddings (0 for a model
    without num_parameters)."""
    count = getattr(model, "num_parameters", None)
    return int(count(exclude_embeddings=True)) if callable(count) else 0


def _plain_nll(trainer: Any) -> bool:
    """Whether TRL's compute_loss would take its plain path (fused LM head, token-mean NLL): the one reproduced
    by _loss_with_pending_metrics. Label smoothing, DFT, MoE auxiliary losses and sequence parallelism keep
    TRL's own."""
    config = getattr(trainer.accelerator, "parallelism_config", None)
    return (trainer.label_smoother is None and trainer.args.loss_type == "nll" and not trainer.aux_loss_enabled
            and not (config is not None and getattr(config, "sp_enabled", False)))


def _loss_with_pending_metrics(trainer: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
    """TRL's loss (the fused head's per-token NLL summed over the trainable tokens, divided by their count) with
    its metrics left on the device: entropy and token accuracy per micro-batch, and the tokens seen."""
    import torch

    mode = "train" if trainer.model.training else "eval"
    outputs = model(**{**inputs, "use_cache": False}, fused_lm_head=True)
    num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
    loss = (-outputs.log_probs).sum() / torch.as_tensor(num_tokens).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        loss = loss * (trainer.accelerator.num_processes // trainer.get_tp_size())
    gather = trainer.accelerator.gather_for_metrics
    valid = gather(outputs.label_mask.sum()).sum()
    entropy = gather(outputs.entropy.detach().sum()).sum()
    correct = gather(outputs.is_top1.sum()).sum()
    # zero where nothing was trainable, as TRL logs
    trainer._forge_pending[mode].append(torch.stack([entropy.float(), correct.float()]) / valid.clamp(min=1)
                                        * (valid > 0))
    if mode == "train":
        if "attention_mask" in inputs:
            local = inputs["attention_mask"].sum()
        elif "position_ids" in inputs:
            local = torch.full((), inputs["position_ids"].size(1), device=inputs["position_ids"].device)
        else:
            raise ValueError("Expected 'attention_mask' or 'position_ids' in inputs.")
        trainer._forge_train_tokens.append(gather(local).sum())
    if len(trainer._forge_pending[mode]) >= PENDING_LIMIT:
        _settle(trainer)
    return loss


def _input_tokens(trainer: Any, inputs: dict[str, Any]) -> Any:
    """The trainer's count of this micro-batch's input tokens (all of them, or the non-padding ones), summed over
    the processes, as a device tensor; None where transformers' own count should run."""
    import torch

    mode = trainer.args.include_num_input_tokens_seen
    ids = inputs.get(getattr(trainer.model, "main_input_name", "input_ids"))
    if mode not in ("all", "non_padding") or not isinstance(ids, torch.Tensor):
        return None
    if mode == "all":
        count = torch.full((), ids.numel(), device=ids.device, dtype=torch.int64)
    elif "attention_mask" in inputs:
        count = inputs["attention_mask"].sum()
    elif getattr(trainer.processing_class, "pad_token_id", None) is not None:
        count = (ids != trainer.processing_class.pad_token_id).sum()
    else:
        return None
    count = count.to(device=trainer.args.device, dtype=torch.int64, non_blocking=True)
    return trainer.accelerator.gather(count).sum()


# a run that logs rarely reads its pending metrics back every this many micro-batches (each is a small tensor)
PENDING_LIMIT = 256


def _settle(trainer: Any) -> None:
    """Read the pending metrics back into TRL's metric lists and the trainer state (a few reads at a logging step
    or a save instead of several per micro-batch)."""
    pending, train_tokens, tokens = trainer._forge_pending, trainer._forge_train_tokens, trainer._forge_tokens
    if not (any(pending.values()) or train_tokens or tokens):
        return
    import torch

    if train_tokens:
        trainer._total_train_tokens += int(torch.stack(train_tokens).sum().item()) // trainer._tp_size
        train_tokens.clear()
    if tokens:
        trainer.state.num_input_tokens_seen += int(torch.stack(tokens).sum().item())
        tokens.clear()
    for mode, ratios in pending.items():
        if ratios:
            for entropy, accuracy in torch.stack(ratios).tolist():
                trainer._metrics[mode]["entropy"].append(entropy)
                trainer._metrics[mode]["mean_token_accuracy"].append(accuracy)
            trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]
            ratios.clear()


def _encoder_trainer(task: str, model: Any, tokenizer: Any, settings: TrainerSettings, train: Any,
                     validation: Any, loss_function: Any, callbacks: list[Any]) -> Any:
    from transformers import (DataCollatorForLanguageModeling, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    fields = TrainingArguments.__dataclass_fields__
    args = TrainingArguments(**{k: v for k, v in settings.args.items() if k in fields})
    max_length = settings.args.get("max_length") or 512
    if task == "sequence_classification" and "label" not in train.column_names:
        raise ForgeRuntimeError("model.task sequence_classification needs a `label` column in the data",
                                "give the examples integer labels, or use model.task: masked_lm",
                                doc="data-errors")

    def tokenize(batch: dict[str, list[Any]]) -> dict[str, Any]:
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    def prepare(dataset: Any) -> Any:
        if dataset is None:
            return None
        drop = [c for c in dataset.column_names if c not in ("label",)]
        return dataset.map(tokenize, batched=True, remove_columns=drop)

    if task == "token_classification":
        return _tagger_trainer(model, tokenizer, args, max_length, train, validation, loss_function, callbacks)
    if task == "masked_lm":
        collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=True, mlm_probability=0.15)
    else:
        collator = DataCollatorWithPadding(tokenizer=tokenizer)
    return Trainer(model=model, args=args, data_collator=collator, train_dataset=prepare(train),
                   eval_dataset=prepare(validation), processing_class=tokenizer, compute_loss_func=loss_function,
                   callbacks=callbacks)


def _tagger_trainer(model: Any, tokenizer: Any, args: Any, max_length: int, train: Any, validation: Any,
                    loss_function: Any, callbacks: list[Any]) -> Any:
    """Trainer for a token classifier on word-tagged rows (`words`, `tags`): each word's tag on its first
    sub-token (forge/data/subwords.py), entity-level scores (seqeval, strict IOB2) at every evaluation."""
    from transformers import DataCollatorForTokenClassification, Trainer

    from forge.data.subwords import encode_words
    from forge.evaluate.entities import trainer_metrics

    if "tags" not in train.column_names:
        raise ForgeRuntimeError("model.task token_classification needs word-tagged data",
                                "read IOB files with data.sources[].format: conll", doc="data-errors")

    def tokenize(row: dict[str, Any]) -> dict[str, Any]:
        encoded = encode_words(tokenizer, row["words"], max_length, row["tags"])
        encoded.pop("word_ids")
        return encoded

    def prepare(dataset: Any) -> Any:
        return None if dataset is None else dataset.map(tokenize, remove_columns=dataset.column_names)

    compute, argmax = trainer_metrics(train.features["tags"].feature.names)
    return Trainer(model=model, args=args, data_collator=DataCollatorForTokenClassification(tokenizer),
                   train_dataset=prepare(train), eval_dataset=prepare(validation), processing_class=tokenizer,
                   compute_loss_func=loss_function, callbacks=callbacks, compute_metrics=compute,
                   preprocess_logits_for_metrics=argmax)

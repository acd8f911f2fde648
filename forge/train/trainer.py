"""Assemble the trainer from the Plan: SFTConfig arguments (Forge-only keys popped, mixed precision resolved
for this machine) and TRL's SFTTrainer for causal LMs, or transformers' Trainer for BERT-style encoders.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from forge.model.errors import ForgeRuntimeError

FORGE_ONLY_KEYS = ("mixed_precision", "loss", "early_stopping", "speed")
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
        from trl import SFTConfig, SFTTrainer

        collator = None
        padding_free = (settings.speed or {}).get("padding_free")
        if padding_free and not settings.args.get("packing"):  # packing is padding-free in TRL already
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

            collator = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
        trainer = _sft_trainer_class()(model=model, args=SFTConfig(**settings.args), train_dataset=train,
                                       eval_dataset=validation, processing_class=tokenizer, callbacks=callbacks,
                                       data_collator=collator)
        trainer.compute_loss_func = loss_function  # a user loss: one forward per step (see _sft_trainer_class)
    else:
        trainer = _encoder_trainer(task, model, tokenizer, settings, train, validation, loss_function, callbacks)
    for default in (ProgressCallback, PrinterCallback):  # Forge draws its own progress bar
        trainer.remove_callback(default)
    return trainer


def _sft_trainer_class() -> Any:
    """SFTTrainer that computes a user loss (compute_loss_func) from one forward pass, as transformers' Trainer
    does. TRL's own path for it runs the model a second time for its entropy and accuracy metrics, and TRL
    deprecates passing compute_loss_func in favour of a subclass like this one."""
    from transformers import Trainer
    from trl import SFTTrainer

    class ForgeSFTTrainer(SFTTrainer):
        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if self.compute_loss_func is None:
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            return Trainer.compute_loss(self, model, {**inputs, "use_cache": False}, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return ForgeSFTTrainer


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

    if task == "masked_lm":
        collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm=True, mlm_probability=0.15)
    else:
        collator = DataCollatorWithPadding(tokenizer=tokenizer)
    return Trainer(model=model, args=args, data_collator=collator, train_dataset=prepare(train),
                   eval_dataset=prepare(validation), processing_class=tokenizer, compute_loss_func=loss_function,
                   callbacks=callbacks)

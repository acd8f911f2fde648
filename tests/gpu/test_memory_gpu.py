"""training.memory on a GPU: auto checkpoints nothing where everything fits, a budget between the two ends
checkpoints the first layers only, and both train to the losses of the run that checkpoints every layer; peaks
fall in that order; FLOPs and MFU reach the summary; a GPU that another allocation crowds stops the run with a
one-line error before the model is loaded.

Self-contained (model, tokenizer and texts built in a temporary folder); skipped without CUDA.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from gpu_runs import close, losses, run, six_qlora_steps, small_setup  # noqa: E402
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

RECIPE = six_qlora_steps("""\
  mixed_precision: bf16
  logging_steps: 1
  save_steps: 100
  speed: {{compile: "off"}}
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("bitsandbytes")
    return small_setup(tmp_path_factory.mktemp("memory"), 48, longest=400, model_longest=400, recipe=RECIPE,
                       empty_cache=True)


def test_the_plan_trains_like_full_checkpointing_with_the_memory_it_is_given(
        setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.memory_plan import Sizes, peak_bytes

    full = run(setup, "full", monkeypatch, "training.memory=off")  # every layer checkpointed, as before
    auto = run(setup, "auto", monkeypatch)
    plan = auto["memory"]
    assert plan["choice"]["checkpointed"] == 0 and plan["choice"]["layers"] == 4  # a big GPU holds it all
    assert plan["choice"]["dense"] == 4  # and, with nothing recomputed, every layer's 4-bit weights dequantized
    assert any(n.startswith("memory: 28 4-bit weights of the last 4 layers held dequantized") for n in auto["notes"])
    assert "memory" not in full
    # a budget that the planner meets with the first two layers checkpointed (inputs on the GPU)
    sizes = Sizes(**plan["sizes"])
    budget = int(peak_bytes(sizes, 4, 2, 0, 8 * 512))
    part = run(setup, "part", monkeypatch, f"training.memory={budget}B")
    choice = part["memory"]["choice"]
    assert (choice["checkpointed"], choice["offloaded"], choice["pattern"]) == (2, 0, "first 2"), part["memory"]
    assert any(n.startswith("memory: the first 2 of 4 layers checkpointed") for n in part["notes"])
    assert losses(full)[0] > losses(full)[-1]  # it learns
    for other in (auto, part):
        assert close(losses(other), losses(full), 2e-2), (losses(other), losses(full))
    peaks = [s["peak_memory_bytes"] for s in (full, part, auto)]
    assert peaks[0] < peaks[1] < peaks[2], peaks  # fewer recomputed layers, more memory
    print("predicted / measured peak:", [(s["memory"]["predicted_peak_bytes"], s["peak_memory_bytes"])
                                         for s in (part, auto)])
    flops = auto["flops"]
    assert flops["recompute_per_token"] == 0 and part["flops"]["recompute_per_token"] > 0
    assert flops["peak_flops"] and 0 < flops["mfu"] < 1 and flops["hfu"] == flops["mfu"]
    assert full["flops"]["hfu"] > full["flops"]["mfu"]


def test_a_crowded_gpu_stops_the_run_before_loading(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.model.errors import ForgeRuntimeError

    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - 256 * 2**20, dtype=torch.uint8, device="cuda")  # another process's memory, as it were
    try:
        started = time.perf_counter()
        with pytest.raises(ForgeRuntimeError) as caught:
            run(setup, "crowded", monkeypatch)
        elapsed = time.perf_counter() - started
    finally:
        del hog
        torch.cuda.empty_cache()
    message = str(caught.value)
    assert "free of" in message and "other processes hold the rest" in message and "\n" not in message
    assert elapsed < 30  # no model was loaded

"""Perplexity: which windows score which tokens, NLL against hand-computed values, token weighting over a set,
and the sliding window against a direct computation with a tiny LLaMA."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from forge.evaluate.perplexity import (DocumentScore, Window, effective_stride, perplexity, perplexity_statistic,
                                       score_ids, score_texts, units, windows)


# ---------------------------------------------------------------------------------------------- the windows
def test_windows_score_every_token_after_the_first_once() -> None:
    # 10 tokens, window 4, stride 2: the first window scores tokens 1, 2, 3 (token 0 has no context);
    # then each window ends 2 later and scores its last 2 tokens: 4-5, 6-7, 8-9.
    plan = windows(10, window=4, stride=2)
    assert plan == [Window(0, 4, 1), Window(2, 6, 4), Window(4, 8, 6), Window(6, 10, 8)]
    scored = [t for w in plan for t in range(w.first_target, w.end)]
    assert scored == list(range(1, 10))
    assert all(w.end - w.begin <= 4 for w in plan)


def test_window_stride_sets_the_context_of_later_tokens() -> None:
    # window 4, stride 3: windows end at 4, 7, 10; the window ending at 7 begins at 3, so token 4 (its first
    # target) sees 1 token of context (window - stride) and token 6 sees 3 (window - 1).
    assert windows(10, window=4, stride=3) == [Window(0, 4, 1), Window(3, 7, 4), Window(6, 10, 7)]
    # stride 1 is the most context (window - 1 for every later token) and the most forward passes: 1 + 6
    assert len(windows(10, window=4, stride=1)) == 7
    # the default stride is half the window; a stride of the window or more is cut to window - 1
    assert effective_stride(8, None) == 4 and effective_stride(8, 8) == 7 and effective_stride(8, 100) == 7
    assert windows(10, window=4, stride=4) == windows(10, window=4, stride=3)


def test_short_documents_take_one_window_or_none() -> None:
    assert windows(5, window=8) == [Window(0, 5, 1)]  # the window covers the document
    assert windows(1, window=8) == [] and windows(0, window=8) == []  # nothing to predict
    with pytest.raises(ValueError, match="at least 2 tokens"):
        windows(10, window=1)


# ------------------------------------------------------------------------------------- hand-computed NLL
class BigramModel:
    """A causal LM whose next-token distribution depends only on the current token: logits = log P[token].
    Context cannot change its scores, so any window and stride must give the same NLL, and an off-by-one in
    pairing logits with targets would change it."""

    P = [[0.50, 0.25, 0.25],
         [0.25, 0.25, 0.50],
         [0.20, 0.60, 0.20]]

    def __init__(self) -> None:
        import torch

        self.table = torch.log(torch.tensor(self.P))
        self.calls: list[int] = []

    def __call__(self, input_ids):  # noqa: ANN001, ANN204 - mimics a transformers model
        from types import SimpleNamespace

        self.calls.append(int(input_ids.shape[1]))
        return SimpleNamespace(logits=self.table[input_ids])


def test_nll_of_a_bigram_model_by_hand() -> None:
    # tokens 0 1 2 1: NLL = -ln P(1|0) - ln P(2|1) - ln P(1|2) = -ln 0.25 - ln 0.50 - ln 0.60
    #                     = 1.386294 + 0.693147 + 0.510826 = 2.590267 nats over 3 tokens;
    # perplexity = exp(2.590267 / 3) = (0.25 * 0.50 * 0.60) ** (-1/3) = 0.075 ** (-1/3) = 2.371262
    model = BigramModel()
    score = score_ids(model, [0, 1, 2, 1], window=8)
    assert score.tokens == 3
    assert score.nll == pytest.approx(-math.log(0.25) - math.log(0.5) - math.log(0.6), abs=1e-6)
    assert score.nll == pytest.approx(2.590267, abs=1e-5)
    assert perplexity([score]) == pytest.approx(2.371262, abs=1e-5)
    assert model.calls == [4]  # one forward pass over the whole document


# passes over 8 tokens: 1 + ceil((8 - window) / stride), e.g. window 4, stride 2: windows end at 4, 6, 8
@pytest.mark.parametrize("window,stride,passes", [(2, 1, 7), (3, 1, 6), (4, 2, 3), (4, 3, 3), (8, None, 1)])
def test_sliding_window_pairs_each_target_with_its_logits(window: int, stride: int | None, passes: int) -> None:
    # 0 1 2 1 0 0 2 2: -ln[P(1|0) P(2|1) P(1|2) P(0|1) P(0|0) P(2|0) P(2|2)]
    #                = -ln(0.25 * 0.5 * 0.6 * 0.25 * 0.5 * 0.25 * 0.2) = -ln(0.00046875) = ln(2133.33) = 7.665441
    model = BigramModel()
    score = score_ids(model, [0, 1, 2, 1, 0, 0, 2, 2], window=window, stride=stride)
    assert score.tokens == 7
    assert score.nll == pytest.approx(-math.log(0.25 * 0.5 * 0.6 * 0.25 * 0.5 * 0.25 * 0.2), abs=1e-5)
    assert score.nll == pytest.approx(7.665441, abs=1e-5)
    assert len(model.calls) == passes and max(model.calls) <= window


# -------------------------------------------------------------------------------- the set's perplexity
def test_set_perplexity_is_token_weighted() -> None:
    # document A: 2.0 nats over 1 token; document B: 4.0 nats over 4 tokens.
    # token-weighted: exp((2 + 4) / (1 + 4)) = exp(1.2) = 3.320117
    # (a mean of per-document perplexities would be (e^2 + e^1) / 2 = 5.053669: the short document dominates)
    scores = [DocumentScore(2.0, 1), DocumentScore(4.0, 4)]
    assert perplexity(scores) == pytest.approx(3.320117, abs=1e-6)
    assert perplexity(scores) != pytest.approx((math.exp(2) + math.exp(1)) / 2, abs=1e-3)
    assert units(scores).tolist() == [[2.0, 1.0, 0.0], [4.0, 4.0, 0.0]]  # (NLL, tokens, bytes)
    assert float(perplexity_statistic(units(scores))) == pytest.approx(3.320117, abs=1e-6)
    # the bootstrap passes resamples as a leading axis: row 0 = A twice, row 1 = B twice
    # exp(4 / 2) = 7.389056 and exp(8 / 8) = 2.718282
    resampled = units(scores)[np.array([[0, 0], [1, 1]])]
    assert perplexity_statistic(resampled) == pytest.approx([7.389056, 2.718282], abs=1e-6)


def test_perplexity_of_nothing_and_of_overflow() -> None:
    assert math.isnan(perplexity([])) and math.isnan(perplexity([DocumentScore(0.0, 0)]))
    assert perplexity([DocumentScore(800.0, 1)]) == math.inf  # exp(800) overflows a float


# ------------------------------------------------------------------------------- against a tiny LLaMA
@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir: Path):  # noqa: ANN201
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


def _direct_nll(model, ids: list[int], first_target: int = 1) -> float:  # noqa: ANN001
    """Summed NLL of ids[first_target:] given everything before, by transformers' own loss (a mean over the
    labels that are not -100, times their number)."""
    import torch

    tensor = torch.tensor([ids])
    labels = tensor.clone()
    labels[0, :first_target] = -100
    with torch.inference_mode():
        loss = model(input_ids=tensor, labels=labels).loss
    return float(loss) * (len(ids) - first_target)


def test_one_window_equals_the_direct_computation(tiny_lm) -> None:  # noqa: ANN001
    model, tokenizer = tiny_lm
    text = "BRCA1 regulates DNA repair in breast cells. TP53 suppresses tumor growth in lung tissue."
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id  # the BOS gives the first word a context, so it is scored
    n = len(ids)
    score = score_ids(model, ids, window=n + 5)
    assert score.tokens == n - 1
    assert score.nll == pytest.approx(_direct_nll(model, ids), rel=1e-5)
    [from_text] = score_texts(model, tokenizer, [text], window=n + 5)
    # after a BOS every token of the text is scored, so every byte of it is
    assert from_text == DocumentScore(score.nll, score.tokens, len(text.encode("utf-8")))
    assert perplexity([score]) == pytest.approx(math.exp(_direct_nll(model, ids) / (n - 1)), rel=1e-5)


def test_sliding_window_equals_the_sum_of_direct_window_computations(tiny_lm) -> None:  # noqa: ANN001
    model, tokenizer = tiny_lm
    ids = tokenizer("EGFR activates apoptosis in colon cells. " * 4)["input_ids"]
    n, window, stride = len(ids), 8, 3
    assert n > 3 * window
    plan = windows(n, window, stride)
    # each window's targets, scored by transformers on that window alone (the context a window keeps)
    expected = sum(_direct_nll(model, ids[w.begin:w.end], w.first_target - w.begin) for w in plan)
    score = score_ids(model, ids, window=window, stride=stride)
    assert score.tokens == n - 1
    assert score.nll == pytest.approx(expected, rel=1e-5)
    # less context scores the same tokens differently than the whole document does
    assert score.nll != pytest.approx(_direct_nll(model, ids), rel=1e-4)


def test_more_stride_means_fewer_passes_same_tokens(tiny_lm) -> None:  # noqa: ANN001
    model, tokenizer = tiny_lm
    ids = tokenizer("KRAS binds RNA splicing in liver cells. " * 3)["input_ids"]
    counts = {s: score_ids(model, ids, window=16, stride=s) for s in (2, 8, 15)}
    assert {c.tokens for c in counts.values()} == {len(ids) - 1}
    assert len(windows(len(ids), 16, 2)) > len(windows(len(ids), 16, 8)) > len(windows(len(ids), 16, 15))

"""Prompting a causal LM for the generation tasks, with each request timed: the instruction templates, a
passage cut to fit the context, greedy or sampled decoding, and latency / throughput statistics.

One prompt per request (no batching), so a request's latency is what a user of `forge serve` waits for one
answer on the same hardware, and tokens/s counts generated tokens only.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.data.chunking import cut_to_tokens
from forge.data.formats import LIST_GENES_PROMPT

# The instruction each generation task gives. The passage is cut (in tokens) so the prompt fits.
TEMPLATES = {
    "genes": LIST_GENES_PROMPT.replace("{text}", "{passage}"),  # the prompt the list_genes template trains on
    "summary": "Summarize the following scientific text in a few sentences.\n\nText: {passage}\n\nSummary:",
    "answer": ("Answer the question about the following abstract with a short phrase.\n\nAbstract: {passage}\n\n"
               "Question: {question}\n\nAnswer:"),
}


@dataclass(frozen=True)
class Generation:
    """One request: the generated text, how many tokens went in and came out, and how long it took."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


@dataclass(frozen=True)
class Prompter:
    """How to prompt one model: its tokenizer, whether to use its chat template, and the decoding settings."""

    tokenizer: Any
    max_input_tokens: int
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    chat: bool = False

    def render(self, template: str, passage: str, **fields: str) -> str:
        """The prompt text with the passage cut so the whole prompt fits max_input_tokens."""
        return self._wrap(TEMPLATES[template].format(passage=self.fit(template, passage, **fields), **fields))

    def fit(self, template: str, passage: str, **fields: str) -> str:
        """The longest prefix of the passage, cut at a token boundary, with which the prompt fits
        max_input_tokens: the exact text the model is shown (gene recognition's gold is read from it)."""
        empty = self._wrap(TEMPLATES[template].format(passage="", **fields))
        return cut_to_tokens(passage, self.tokenizer, self.max_input_tokens - len(self._encode(empty)))

    def _wrap(self, instruction: str) -> str:
        if self.chat and getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": instruction}], tokenize=False,
                                                      add_generation_prompt=True)
        return instruction

    def _encode(self, prompt: str) -> list[int]:
        # a chat template writes its own special tokens (bos); a plain prompt gets the tokenizer's
        return self.tokenizer(prompt, add_special_tokens=not (self.chat and getattr(
            self.tokenizer, "chat_template", None)), verbose=False)["input_ids"]

    def generate(self, model: Any, prompt: str) -> Generation:
        """Generate an answer to one prompt and time it (CUDA work included)."""
        import torch

        ids = self._encode(prompt)[-self.max_input_tokens:]
        device = next(model.parameters()).device
        input_ids = torch.tensor([ids], dtype=torch.long, device=device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                                  "pad_token_id": self.tokenizer.pad_token_id,
                                  "eos_token_id": self.tokenizer.eos_token_id}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kwargs.update(do_sample=False)
        _sync(device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        _sync(device)
        seconds = time.perf_counter() - started
        new = out[0, input_ids.shape[1]:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(text=text.strip(), prompt_tokens=len(ids), new_tokens=int(new.numel()), seconds=seconds)


    def warm_up(self, model: Any) -> None:
        """One short, untimed generation: the first call pays for allocation and kernel selection."""
        import dataclasses

        dataclasses.replace(self, max_new_tokens=min(4, self.max_new_tokens)).generate(model, "Genes:")


def benchmark_generation(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 64,
                         max_input_tokens: int | None = None, warmup: int = 1, repeats: int = 1) -> dict[str, Any]:
    """Latency and tokens/s of a causal LM answering prompts one request at a time (greedy), after `warmup`
    untimed requests; each prompt is sent `repeats` times. Returns latency_summary's numbers."""
    if not prompts:
        raise ValueError("benchmark_generation needs at least one prompt")
    if max_input_tokens is None:
        positions = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 2048
        max_input_tokens = max(16, int(positions) - max_new_tokens)
    prompter = Prompter(tokenizer, max_input_tokens=max_input_tokens, max_new_tokens=max_new_tokens)
    for i in range(warmup):
        prompter.generate(model, prompts[i % len(prompts)])
    return latency_summary([prompter.generate(model, p) for _ in range(repeats) for p in prompts])


def _sync(device: Any) -> None:
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        torch.cuda.synchronize(device)


def latency_summary(generations: Sequence[Generation]) -> dict[str, float | int]:
    """Requests, latency p50/p99 (seconds per request) and generated tokens per second."""
    if not generations:
        return {"requests": 0}
    seconds = np.array([g.seconds for g in generations], dtype=np.float64)
    tokens = int(sum(g.new_tokens for g in generations))
    total = float(seconds.sum())
    return {
        "requests": len(generations),
        "latency_p50_s": float(np.percentile(seconds, 50)),
        "latency_p99_s": float(np.percentile(seconds, 99)),
        "latency_mean_s": float(seconds.mean()),
        "generated_tokens": tokens,
        "prompt_tokens": int(sum(g.prompt_tokens for g in generations)),
        "tokens_per_second": tokens / total if total > 0 else 0.0,
    }

"""Token-by-token generation for one dynamic batch: every row has its own prompt, sampling settings, token
budget and stop strings, streams its text as it grows, and leaves the batch as soon as it is done.

Forge runs its own decoding loop here because transformers' `generate()` takes one set of settings per call
and streams a batch of one only, while LitServe's dynamic batches mix requests that differ in all of these.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# A partial UTF-8 sequence decodes to this; such text is held back until the next token completes it.
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class GenerationJob:
    """One generation, as the HTTP side hands it to a worker: token ids and how to continue them."""

    input_ids: tuple[int, ...]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    stream: bool = False
    seed: int | None = None  # a sampled answer's own random stream: the same seed, the same answer


@dataclass
class _Row:
    job: GenerationJob
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of text already sent (streaming rows)
    finish: str | None = None

    def update(self, tokenizer: Any, token: int | None, is_eos: bool) -> None:
        if is_eos:
            self.finish = "stop"
            return
        self.tokens.append(token)
        self.text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut = _first_stop(self.text, self.job.stop, max(0, self.sent - _longest(self.job.stop)))
        if cut is not None:
            self.text, self.finish = self.text[:cut], "stop"
        elif len(self.tokens) >= self.job.max_new_tokens:
            self.finish = "length"

    def item(self) -> dict[str, Any] | None:
        """What this step sends for the row: a piece of text (streaming), the final record, or nothing."""
        if self.finish is None and not self.job.stream:
            return None
        if self.finish is None:
            # hold back a partial character and anything that could still become a stop string
            end = len(self.text) - max(0, _longest(self.job.stop) - 1)
            while end > self.sent and self.text[end - 1] == REPLACEMENT:
                end -= 1
            if end <= self.sent:
                return None
        else:
            end = len(self.text)
        piece = self.text[self.sent:end] if self.job.stream else self.text[:end]
        self.sent = max(self.sent, end)
        return {"text": piece, "finish_reason": self.finish, "prompt_tokens": len(self.job.input_ids),
                "completion_tokens": len(self.tokens)}


def _longest(stop: Sequence[str]) -> int:
    return max((len(s) for s in stop), default=0)


def _first_stop(text: str, stop: Sequence[str], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stop if s) if i >= 0]
    return min(hits) if hits else None


def eos_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a generation: the tokenizer's eos and the model's generation config's."""
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _cache_argument(model: Any) -> str:
    """The keyword of the key/value cache: `cache` in transformers 5, `past_key_values` in older model code."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def sample_next(logits: Any, temperature: Any, top_p: Any, generators: Sequence[Any] | None = None) -> Any:
    """The next token of each row: argmax where the temperature is 0, else nucleus sampling; a row with its own
    torch.Generator (a seeded request) draws from it, so its answer does not depend on its batch neighbours."""
    import torch

    greedy = logits.argmax(dim=-1)
    if bool((temperature == 0).all()):
        return greedy
    probs = torch.softmax(logits / temperature.clamp(min=1e-5)[:, None], dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p[:, None]  # the first token always stays
    kept = sorted_probs.masked_fill(outside, 0.0)
    if generators and any(g is not None for g in generators):
        choice = torch.cat([torch.multinomial(kept[i:i + 1], 1, generator=g) for i, g in enumerate(generators)])
    else:
        choice = torch.multinomial(kept, 1)
    sampled = order.gather(-1, choice).squeeze(-1)
    return torch.where(temperature == 0, greedy, sampled)


def _generator(seed: int | None, device: Any) -> Any:
    if seed is None:
        return None
    import torch

    return torch.Generator(device=device).manual_seed(seed % 2**64)  # torch takes 0 <= seed < 2**64


def generate_stream(model: Any, tokenizer: Any, jobs: Sequence[GenerationJob],
                    eos_ids: set[int] | None = None) -> Iterator[list[dict[str, Any] | None]]:
    """Generate every job of the batch together; yield, per step that has news, one item (or None) per job.

    A finished row is dropped from the batch (its cache rows too), so a short request does not pay for a
    long one beside it, and its final item (`finish_reason` set) is sent at once."""
    import torch

    eos = eos_token_ids(model, tokenizer) if eos_ids is None else eos_ids
    device = next(model.parameters()).device
    rows = [_Row(job) for job in jobs]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos), 0)
    width = max(len(job.input_ids) for job in jobs)
    ids = torch.full((len(jobs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(jobs), width), dtype=torch.long)
    for i, job in enumerate(jobs):  # left padding: every row's next token goes in the last column
        ids[i, width - len(job.input_ids):] = torch.tensor(job.input_ids, dtype=torch.long)
        mask[i, width - len(job.input_ids):] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    temperature = torch.tensor([job.temperature for job in jobs], dtype=torch.float32, device=device)
    top_p = torch.tensor([job.top_p for job in jobs], dtype=torch.float32, device=device)
    active = list(range(len(jobs)))  # row index of each line of the tensors
    generators = [_generator(job.seed, device) for job in jobs]
    cache_arg = _cache_argument(model)
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        while True:
            past, logits = getattr(out, cache_arg), out.logits[:, -1, :].float()
            tokens = sample_next(logits, temperature, top_p, [generators[r] for r in active])
            items: list[dict[str, Any] | None] = [None] * len(jobs)
            keep = []
            for line, (row_index, token) in enumerate(zip(active, tokens.tolist())):
                row = rows[row_index]
                row.update(tokenizer, token, token in eos)
                items[row_index] = row.item()
                if row.finish is None:
                    keep.append(line)
            if any(item is not None for item in items):
                yield items
            if not keep:
                return
            if len(keep) < len(active):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                past.batch_select_indices(index)
                tokens, mask, positions = tokens[index], mask[index], positions[index]
                temperature, top_p = temperature[index], top_p[index]
                active = [active[line] for line in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                        use_cache=True, **{cache_arg: past})

"""Helpers for evaluation tests: held-out papers in the style of the shared synthetic corpus, a recipe
around them, and a LoRA adapter fitted for a few steps so the fine-tuned model really is better."""
from __future__ import annotations

import random
from pathlib import Path

GENES = ["BRCA1", "TP53", "EGFR", "KRAS", "MYC", "PTEN", "APOE", "CFTR", "BRAF", "PIK3CA"]
VERBS = ["regulates", "suppresses", "activates", "binds", "phosphorylates", "stabilizes"]
PROCESSES = ["DNA repair", "cell cycle arrest", "apoptosis", "tumor growth", "lipid transport"]
TISSUES = ["breast", "lung", "colon", "liver", "brain", "pancreas"]


def corpus_text(rng: random.Random) -> str:
    """One paper-like text in the style of tests/conftest.py's genomics corpus."""
    sentences = [f"Title: {rng.choice(GENES)} and {rng.choice(PROCESSES)} in {rng.choice(TISSUES)} tissue."]
    sentences += [f"{rng.choice(GENES)} {rng.choice(VERBS)} {rng.choice(PROCESSES)} in {rng.choice(TISSUES)} cells."
                  for _ in range(4)]
    return " ".join(sentences)


RECIPE = """\
run: {{name: {name}, seed: 7, output_dir: {output_dir}}}
data:
  sources: [{{path: {papers}}}]
model: {{name_or_path: {model}}}
lora: {{r: 8, alpha: 16, dropout: 0.0}}
training: {{max_seq_length: 64}}
tracking: {{enabled: false}}
evaluation:
  tasks: [perplexity, gene_recognition, summarization, question_answering]
  data: {papers}
  max_examples: 20
  window: 128
  stride: 16
  generation: {{max_new_tokens: 8}}
  bootstrap_samples: 200
  gates:
    - {{metric: perplexity, must: decrease_by, value: 0.10}}
    - {{metric: gene_f1, must: at_least, value: 0.99}}
"""


def held_out_papers(n: int, seed: int) -> list[dict]:
    """Papers in the corpus's style: abstract and one section of corpus text, the genes they mention, a question."""
    rng = random.Random(seed)
    texts = [corpus_text(rng) for _ in range(2 * n)]
    papers = []
    for i in range(n):
        abstract, body = texts[2 * i], texts[2 * i + 1]
        genes = [g for g in GENES if g in abstract or g in body]
        tissue = abstract.split(" in ")[1].split()[0]
        papers.append({"id": f"held-{i}", "title": f"Paper {i}", "abstract": abstract,
                       "sections": [{"heading": "Results", "text": body}],
                       "genes": [{"symbol": "TP53", "aliases": ["p53"]} if g == "TP53" else g for g in genes],
                       "qa": [{"question": "Which tissue is studied?", "answer": tissue}]})
    rng.shuffle(papers)
    return papers


def train_adapter(model_dir: Path, texts: list[str], target: Path, steps: int = 40) -> None:
    """A LoRA adapter fitted for a few steps on texts, saved with the tokenizer like `forge run` saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                      task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-2)
    batch = tokenizer(texts[:16], return_tensors="pt", padding=True, truncation=True, max_length=64)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)

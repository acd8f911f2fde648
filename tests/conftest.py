"""Shared fixtures. Add fixtures here; do not change the ones others rely on."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

# ------------------------------------------------------------------ tiny models (model/, train/ tests)
GENES = ["BRCA1", "TP53", "EGFR", "KRAS", "MYC", "PTEN", "APOE", "CFTR", "BRAF", "PIK3CA"]
VERBS = ["regulates", "suppresses", "activates", "binds", "phosphorylates", "stabilizes"]
PROCESSES = ["DNA repair", "cell cycle arrest", "apoptosis", "tumor growth", "lipid transport",
             "chloride transport", "chromatin remodeling", "RNA splicing"]
TISSUES = ["breast", "lung", "colon", "liver", "brain", "pancreas"]
TINY_SHAPE = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 512}


def genomics_corpus(n: int, seed: int = 0) -> list[str]:
    """n short, paper-like texts about genes: regular enough that a tiny model learns them in a few steps."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        sentences = [f"Title: {rng.choice(GENES)} and {rng.choice(PROCESSES)} in {rng.choice(TISSUES)} tissue."]
        sentences += [f"{rng.choice(GENES)} {rng.choice(VERBS)} {rng.choice(PROCESSES)} in {rng.choice(TISSUES)} cells."
                      for _ in range(4)]
        texts.append(" ".join(sentences))
    return texts


@pytest.fixture(scope="session")
def genomics_texts() -> list[str]:
    """200 synthetic paper-like texts (seed 1), for training tiny tokenizers."""
    return genomics_corpus(200, seed=1)


@pytest.fixture(scope="session")
def genomics_examples() -> list[str]:
    """80 synthetic paper-like texts (seed 2), for training runs: the first 64 train, the last 16 validate."""
    return genomics_corpus(80, seed=2)


@pytest.fixture(scope="session")
def forge_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session cache folder for built tiny models (never the user's ~/.cache/forge)."""
    return tmp_path_factory.mktemp("forge-cache")


@pytest.fixture(scope="session")
def tiny_llama_dir(forge_cache: Path, genomics_texts: list[str]) -> Path:
    """A from_pretrained folder of a tiny random LLaMA (hidden 32, 2 layers) with a BPE tokenizer."""
    from forge.model.tiny import tiny_llama

    return tiny_llama(TINY_SHAPE, genomics_texts, root=forge_cache)


@pytest.fixture(scope="session")
def tiny_bert_dir(forge_cache: Path, genomics_texts: list[str]) -> Path:
    """A from_pretrained folder of a tiny random BERT with a masked-LM head."""
    from forge.model.tiny import tiny_bert

    return tiny_bert(TINY_SHAPE, genomics_texts, root=forge_cache)


# ------------------------------------------------------------------------------ demo corpus (data/ tests)
DEMO_CORPUS = Path(__file__).resolve().parents[1] / "examples" / "data" / "high_quality_papers_demo.json"


@pytest.fixture(scope="session")
def demo_papers() -> list:
    """The shipped demo corpus, read and validated once (400 ScientificPaper records)."""
    from forge.data.readers import read_sources
    from forge.recipe.schema import DataSource

    result = read_sources([DataSource(path=str(DEMO_CORPUS))], on_error="fail")
    return result.papers


@pytest.fixture(scope="session")
def demo_texts(demo_papers: list) -> list[str]:
    """Every title, abstract, heading and section text of the demo corpus."""
    return [text for p in demo_papers for text in (p.title, p.abstract, *(s.heading for s in p.sections),
                                                   *(s.text for s in p.sections)) if text]


@pytest.fixture(scope="session")
def demo_bpe_tokenizer(demo_texts: list[str]):
    """A byte-level BPE tokenizer (vocabulary 600) trained in memory on the demo corpus, wrapped as a
    transformers fast tokenizer with <s>/</s>/<pad>, offsets, and a plain chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    model.train_from_iterator(demo_texts[:2000], trainer)
    model.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=model, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    return tokenizer


# --------------------------------------------------------------- token classification (train/, serve/ tests)
GENE_NAMES = [["BRCA1"], ["TP53"], ["EGFR"], ["KRAS"], ["breast", "cancer", "1"], ["tumor", "protein", "p53"],
              ["IL", "-", "2"], ["cyclin", "D1"]]
CONTEXTS = [["regulates", "DNA", "repair", "in"], ["binds", "the", "promoter", "of"], ["is", "mutated", "with"],
            ["and"], ["suppresses", "growth", "of", "lung", "cells", "with"]]


def tagged_sentences(n: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """n sentences of (word, IOB tag): a gene, a context, another gene, a full stop; multi-word genes tag B, I."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        words: list[tuple[str, str]] = []
        for part in (rng.choice(GENE_NAMES), rng.choice(CONTEXTS), rng.choice(GENE_NAMES)):
            is_gene = part in GENE_NAMES
            words += [(w, ("B-GENE" if i == 0 else "I-GENE") if is_gene else "O") for i, w in enumerate(part)]
        words.append((".", "O"))
        sentences.append(words)
    return sentences


@pytest.fixture(scope="session")
def conll_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CoNLL file (word TAB tag, blank line between sentences) of 48 gene sentences."""
    path = tmp_path_factory.mktemp("conll") / "genes.conll"
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in s) for s in tagged_sentences(48, seed=3)) + "\n",
                    encoding="utf-8")
    return path


TAGGER_RECIPE = """\
run: {{name: tagger, output_dir: {output_dir}, seed: 1}}
data:
  sources: [{{path: {data}, format: conll}}]
  split: {{validation: 0.125, test: 0.0}}
model: {{name_or_path: {model}, task: token_classification, dtype: float32}}
lora: {{enabled: {lora}, r: 8, alpha: 16, dropout: 0.0}}
optimizer: {{lr: 5.0e-3, warmup_ratio: 0.0, scheduler: constant}}
training:
  max_steps: {steps}
  micro_batch_size: 8
  max_seq_length: 64
  gradient_checkpointing: false
  mixed_precision: "no"
  logging_steps: 10
  eval_steps: {steps}
  save_steps: {steps}
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""


def train_tagger(folder: Path, data: Path, model: Path, *, lora: bool, steps: int) -> dict:
    """Train a token classifier on a CoNLL file through `forge run`'s own function; its summary."""
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve
    from forge.train.run import run_recipe

    recipe = folder / "tagger.yaml"
    recipe.write_text(TAGGER_RECIPE.format(output_dir=folder / "runs", data=data, model=model,
                                           lora=str(lora).lower(), steps=steps), encoding="utf-8")
    resolved = resolve(recipe)
    return run_recipe(resolved, compile_plan(resolved.recipe), progress=False)


@pytest.fixture(scope="session")
def tagger_run(tmp_path_factory: pytest.TempPathFactory, conll_file: Path, tiny_bert_dir: Path) -> dict:
    """The summary of a tiny BERT fully fine-tuned as a token classifier on conll_file (seconds on a CPU)."""
    return train_tagger(tmp_path_factory.mktemp("tagger"), conll_file, tiny_bert_dir, lora=False, steps=80)


@pytest.fixture(scope="session")
def tagger_trainer():
    """train_tagger(folder, data, model, lora=..., steps=...): train a token classifier, return its summary."""
    return train_tagger

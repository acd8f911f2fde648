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

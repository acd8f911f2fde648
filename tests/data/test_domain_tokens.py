"""How a tokenizer cuts gene symbols and other domain terms, and adding domain tokens to it."""
from __future__ import annotations

import copy

from data_support import paper
from forge.data.domain_tokens import add_domain_tokens, domain_terms, term_token_report, tokens_in_context


def test_tokens_in_context_count_the_term_after_a_space(demo_bpe_tokenizer) -> None:
    # Byte-level BPE splits "the BRCA1" into "the" and " BRCA1": the term's tokens carry the space.
    for term in ("BRCA1", "TP53", "NF-kappaB", "the"):
        assert tokens_in_context(demo_bpe_tokenizer, term) == len(demo_bpe_tokenizer.tokenize(" " + term)), term


def test_report_counts_unique_terms_and_ranks_the_most_split(demo_bpe_tokenizer) -> None:
    terms = ["BRCA1", "TP53", "the", "BRCA1", "  ", "CDKN2A"]
    counts = {t: tokens_in_context(demo_bpe_tokenizer, t) for t in ("BRCA1", "TP53", "the", "CDKN2A")}
    report = term_token_report(demo_bpe_tokenizer, terms, worst=2)
    assert report.terms == 4 and report.tokens == counts
    assert report.mean_tokens == round(sum(counts.values()) / 4, 3)
    assert report.single_token_share == round(sum(c == 1 for c in counts.values()) / 4, 3)
    assert counts["the"] == 1 and report.single_token_share >= 0.25  # "the" is surely one token
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert report.worst == ranked[:2] and report.worst[0][1] >= report.worst[1][1]
    assert "tokens" not in report.to_dict() and "tokens" in report.to_dict(full=True)
    empty = term_token_report(demo_bpe_tokenizer, [])
    assert (empty.terms, empty.mean_tokens, empty.worst) == (0, 0.0, [])


def test_domain_terms_are_gene_symbols_and_aliases_by_frequency() -> None:
    papers = [paper("a", genes=[{"symbol": "TP53", "aliases": ["p53"]}, {"symbol": "BRCA1"}]),
              paper("b", genes=[{"symbol": "TP53", "aliases": ["p53"]}]),
              paper("c", genes=[{"symbol": "KRAS"}, {"symbol": "TP53"}])]
    assert domain_terms(papers) == ["TP53", "p53", "BRCA1", "KRAS"]
    assert domain_terms(papers, aliases=False, limit=2) == ["TP53", "BRCA1"]


def test_adding_domain_tokens_makes_each_term_one_token(demo_bpe_tokenizer) -> None:
    tokenizer = copy.deepcopy(demo_bpe_tokenizer)  # the session tokenizer stays as it was
    size = len(tokenizer)
    assert len(tokenizer.tokenize("BRCA1")) > 1
    # Repeats, blanks and tokens the vocabulary has ("e" is in the byte alphabet) are not added.
    assert add_domain_tokens(tokenizer, ["BRCA1", "CDKN2A", "BRCA1", " ", "e"]) == 2
    assert len(tokenizer) == size + 2  # the model resizes its embeddings to this
    assert add_domain_tokens(tokenizer, ["BRCA1"]) == 0
    assert tokenizer.tokenize("BRCA1") == ["BRCA1"]
    ids = tokenizer("loss of CDKN2A", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids("CDKN2A") in ids
    assert tokenizer.decode(ids) == "loss of CDKN2A"
    # An added token is matched before byte-level pre-tokenization, so the space before it becomes a
    # token of its own: in running text the term costs 2 tokens instead of 1 + its old pieces.
    assert tokens_in_context(tokenizer, "BRCA1") == 2 < tokens_in_context(demo_bpe_tokenizer, "BRCA1")
    assert len(demo_bpe_tokenizer) == size

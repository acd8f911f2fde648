"""Chunking to a token budget with overlap: by words without a tokenizer, by a real tokenizer's offsets
with one, preferring sentence ends, and keeping every chunk's paper id."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from data_support import paper, run_step
from forge.data.chunking import chunk_text, count_tokens, cut_to_tokens
from forge.data.errors import DataError
from forge.data.steps import STEPS, StepContext


def numbered(n: int, prefix: str = "w") -> str:
    return " ".join(f"{prefix}{i}" for i in range(n))


def test_text_within_budget_comes_back_whole() -> None:
    assert chunk_text("a b c", None, max_tokens=3) == ["a b c"]


def test_word_windows_share_exactly_the_overlap_when_there_are_no_sentences() -> None:
    chunks = chunk_text(numbered(25), None, max_tokens=10, overlap=3)
    # Windows start at 0, 7, 14, 21: each starts 3 words before the previous one ended.
    assert chunks == [" ".join(f"w{i}" for i in range(a, min(a + 10, 25))) for a in (0, 7, 14, 21)]
    for previous, following in zip(chunks, chunks[1:]):
        assert previous.split()[-3:] == following.split()[:3]


def test_without_overlap_the_chunks_partition_the_words() -> None:
    chunks = chunk_text(numbered(23), None, max_tokens=5)
    assert [len(c.split()) for c in chunks] == [5, 5, 5, 5, 3]
    assert " ".join(chunks) == numbered(23)


def test_cut_moves_back_to_a_sentence_end_near_the_budget() -> None:
    first = " ".join(f"a{i}" for i in range(1, 15)) + " a15."  # 15 words, a sentence
    second = " ".join(f"b{i}" for i in range(1, 11)) + "."
    text = f"{first} {second}"
    # The window of 16 words would end on b1; the sentence ends one word earlier, inside the last eighth.
    assert chunk_text(text, None, max_tokens=16) == [first, second]
    # With overlap 4, the next window starts 4 words back (no sentence starts inside the overlap).
    chunks = chunk_text(text, None, max_tokens=16, overlap=4)
    assert chunks[0] == first and chunks[1].startswith("a12 a13 a14 a15. b1")


def test_next_window_starts_at_a_sentence_start_inside_the_overlap() -> None:
    text = "s1 s2 s3 s4 s5 s6 s7 s8. t1 t2 t3 t4 t5 t6 t7 t8 t9 t10"
    chunks = chunk_text(text, None, max_tokens=10, overlap=4)
    # The first window ends at t2; of the 4 overlap words (s7 s8. t1 t2) the sentence starts at t1.
    assert chunks[0] == "s1 s2 s3 s4 s5 s6 s7 s8. t1 t2"
    assert chunks[1].startswith("t1 t2 t3")


def test_dots_inside_notation_are_not_sentence_ends() -> None:
    text = "x " * 14 + "p.Arg97Cys 1.5 y z w"
    chunks = chunk_text(text.strip(), None, max_tokens=16)
    assert chunks[0].endswith("p.Arg97Cys 1.5")  # the cut stays at the budget, not after "p." or "1."


def test_bad_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("a b c", None, max_tokens=3, overlap=3)


def test_tokenizer_chunks_fit_the_budget_and_overlap(demo_bpe_tokenizer, demo_papers) -> None:
    from forge.data.papers import all_text

    text = all_text(demo_papers[0])
    total = count_tokens([text], demo_bpe_tokenizer)[0]
    assert total > 200  # a small vocabulary cuts the paper into many tokens
    chunks = chunk_text(text, demo_bpe_tokenizer, max_tokens=64, overlap=16)
    counts = count_tokens(chunks, demo_bpe_tokenizer)
    assert len(chunks) >= total // 64 and max(counts) <= 64
    for previous, following in zip(chunks, chunks[1:]):
        # Each chunk begins with text that ends the previous one (the overlap, moved to a sentence start
        # when one is inside it); 8 characters of it are enough to show the shared tokens.
        assert following[:8] in previous
    # Every word of the paper is in some chunk.
    assert set(text.split()) <= {w for c in chunks for w in c.split()}


def test_step_cuts_causal_text_and_keeps_the_paper_id(demo_bpe_tokenizer) -> None:
    body = ". ".join(f"Sentence {i} says that TP53 binds MDM2 in cells" for i in range(40)) + "."
    record = paper("long", title="TP53 and MDM2", abstract="TP53 binds MDM2.",
                   sections=[{"heading": "Results", "text": body}], keywords=["TP53"], genes=["TP53", "MDM2"])
    context = StepContext(tokenizer=demo_bpe_tokenizer, max_seq_length=1024)
    output = run_step("chunk", [record], context, max_tokens=64, overlap=8)
    chunks = output.papers
    assert len(chunks) > 3 and output.dropped == {}
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    assert {c.id for c in chunks} == {"long"} and all(c.gene_symbols == ["TP53", "MDM2"] for c in chunks)
    # Causal-LM chunks carry the whole example text in full_text; with the <s> the model adds, each fits.
    assert all(c.title == "" and c.abstract == "" and c.sections == () for c in chunks)
    assert chunks[0].full_text.startswith("TP53 and MDM2\n\nTP53 binds MDM2.")
    lengths = [len(ids) for ids in demo_bpe_tokenizer([c.full_text for c in chunks])["input_ids"]]
    assert max(lengths) <= 64


def test_step_for_instruction_format_cuts_the_body_and_keeps_title_and_abstract() -> None:
    body = " ".join(f"word{i}" for i in range(300))
    record = paper("inst", title="A title", abstract="An abstract about TP53.", full_text=body)
    context = StepContext(tokenizer=None, format="instruction")
    chunks = run_step("chunk", [record], context, max_tokens=200, overlap=10).papers
    # Budget: 200 - 2 title words - 4 abstract words - 48 for the template = 146 words of body per chunk,
    # windows starting every 136 words: 0, 136, 272.
    assert all(c.title == "A title" and c.abstract == "An abstract about TP53." for c in chunks)
    assert [len(c.full_text.split()) for c in chunks] == [146, 146, 28]
    # A long title and abstract may not squeeze the body below half the budget: 100 -> 50 words.
    chunks = run_step("chunk", [record], context, max_tokens=100, overlap=10).papers
    assert max(len(c.full_text.split()) for c in chunks) == 50


def test_step_defaults_to_the_training_sequence_length_and_leaves_short_papers_alone() -> None:
    short = paper("short", abstract="TP53 binds MDM2.")
    long = paper("long", full_text=numbered(50))
    chunks = run_step("chunk", [short, long], StepContext(max_seq_length=20)).papers
    assert chunks[0] is short and chunks[0].chunk_index is None
    assert [len(c.full_text.split()) for c in chunks[1:]] == [20, 20, 12]  # "Paper long" + 50 words = 52


def test_overlap_that_leaves_no_room_is_a_data_error() -> None:
    record = paper("inst", title="T", abstract="A.", full_text=numbered(200))
    with pytest.raises(DataError, match="overlap 40 leaves no room"):
        run_step("chunk", [record], StepContext(format="instruction"), max_tokens=64, overlap=40)


def test_chunk_arguments_are_checked() -> None:
    params = STEPS.get("chunk").params
    with pytest.raises(ValidationError, match="overlap"):
        params.model_validate({"max_tokens": 64, "overlap": 64})
    with pytest.raises(ValidationError):
        params.model_validate({"max_tokens": 8})


def test_characters_of_several_byte_tokens_never_stall_the_budget(demo_bpe_tokenizer) -> None:
    # "\u2192" is 3 UTF-8 bytes, unseen in the demo corpus: 3 byte tokens that share one character's offsets.
    text = "\u2192" * 40
    assert count_tokens(["\u2192"], demo_bpe_tokenizer) == [3]
    chunks = chunk_text(text, demo_bpe_tokenizer, max_tokens=10)
    counts = count_tokens(chunks, demo_bpe_tokenizer)
    # A window of 10 tokens ends inside the 4th character; the chunk is cut back to whole characters.
    assert max(counts) <= 10 and chunks[0] == "\u2192" * 3


def test_a_passage_is_cut_to_the_longest_prefix_within_the_budget(demo_bpe_tokenizer) -> None:
    text = "BRCA1 regulates DNA repair in breast cells. " * 20
    total = count_tokens([text], demo_bpe_tokenizer)[0]
    for budget in (1, 7, 30, total - 1):
        cut = cut_to_tokens(text, demo_bpe_tokenizer, budget)
        longer = cut_to_tokens(text, demo_bpe_tokenizer, budget + 1)
        assert text.startswith(cut) and count_tokens([cut], demo_bpe_tokenizer) == [budget]
        assert len(longer) > len(cut), budget  # one token more shows more of the text: the cut is the longest
    assert cut_to_tokens(text, demo_bpe_tokenizer, total) == text
    assert cut_to_tokens(text, demo_bpe_tokenizer, 0) == "" == cut_to_tokens(text, demo_bpe_tokenizer, -3)


class SlowWordTokenizer:
    """A tokenizer without offsets (as transformers' slow tokenizers): whitespace words are its tokens."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False,
                 verbose: bool = True) -> dict[str, list[int]]:
        if return_offsets_mapping:
            raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
        self.calls += 1
        return {"input_ids": list(range(len(text.split())))}


def test_a_tokenizer_without_offsets_gets_the_longest_prefix_that_fits() -> None:
    words = SlowWordTokenizer()
    assert cut_to_tokens("TP53 binds MDM2 in the nucleus", words, 3) == "TP53 binds MDM2 "
    assert cut_to_tokens("TP53 binds MDM2", words, 0) == ""
    words.calls = 0
    assert cut_to_tokens("TP53 binds MDM2", words, 3) == "TP53 binds MDM2" and words.calls == 1  # fits: one look

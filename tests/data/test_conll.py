"""CoNLL/IOB files for token classification: reading (tabs or spaces, -DOCSTART-, errors with file:line), the
label set, the seeded split, and the first-sub-token alignment with a real sub-word tokenizer."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.data.conll import TaggedSentence, label_names, read_conll
from forge.data.errors import DataError
from forge.data.subwords import IGNORE, encode_words, split_words, token_words


def test_tab_and_space_separated_files_read_the_same(tmp_path: Path) -> None:
    tabs = tmp_path / "a.conll"
    tabs.write_text("-DOCSTART-\tO\n\nBRCA1\tB-GENE\nbinds\tO\n\n\nIL\tB-GENE\n-\tI-GENE\n2\tI-GENE\n", encoding="utf-8")
    spaces = tmp_path / "b.conll"  # extra columns (POS, chunk) before the tag, as CoNLL-2003 has
    spaces.write_text("BRCA1 NN B-NP B-GENE\nbinds VB B-VP O\n\nIL NN B-NP B-GENE\n- : O I-GENE\n2 CD O I-GENE\n",
                      encoding="utf-8")
    for path in (tabs, spaces):
        sentences = read_conll(path)
        assert [s.words for s in sentences] == [("BRCA1", "binds"), ("IL", "-", "2")]
        assert [s.tags for s in sentences] == [("B-GENE", "O"), ("B-GENE", "I-GENE", "I-GENE")]
    assert [s.id for s in read_conll(tabs)] == ["a.conll:3", "a.conll:7"]


@pytest.mark.parametrize("line, problem", [("BRCA1\tGENE", "tag 'GENE' is not O, B-TYPE or I-TYPE"),
                                           ("BRCA1", "expected 'word TAB tag'")])
def test_a_bad_line_is_an_error_with_its_place(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.conll"
    path.write_text(f"TP53\tB-GENE\n\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_conll(path)
    assert f"{path}:3: {problem}" in str(error.value)


def test_labels_hold_both_prefixes_of_every_type() -> None:
    sentences = [TaggedSentence("a", ("x", "y"), ("B-Protein", "O")), TaggedSentence("b", ("z",), ("I-DNA",))]
    assert label_names(sentences) == ["O", "B-DNA", "I-DNA", "B-Protein", "I-Protein"]


def test_raw_text_splits_into_corpus_style_words() -> None:
    text = "IL-2 binds BRCA1 (p53)."
    assert [text[s:e] for s, e in split_words(text)] == ["IL", "-", "2", "binds", "BRCA1", "(", "p53", ")", "."]


def test_each_word_labels_its_first_sub_token_only(tiny_bert_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    words = ["phosphorylates", "BRCA1", "quickly"]
    encoded = encode_words(tokenizer, words, 64, [0, 1, 0])
    owners, labels = encoded["word_ids"], encoded["labels"]
    assert owners[0] is None and owners[-1] is None  # [CLS] and [SEP]
    assert labels[0] == labels[-1] == IGNORE
    for word, label in enumerate([0, 1, 0]):
        positions = [i for i, w in enumerate(owners) if w == word]
        assert positions, f"word {word} lost"
        assert labels[positions[0]] == label and all(labels[i] == IGNORE for i in positions[1:])
    # the fixture needs at least one word cut into several sub-tokens for this to test anything
    assert len(owners) > len(words) + 2


def test_a_token_belongs_to_the_word_of_its_first_non_space_character() -> None:
    # a byte-level token keeps the space before its word: (5, 10) is " BRCA" of "binds BRCA1"
    assert token_words([(0, 0), (0, 5), (5, 10), (10, 11), (0, 0)], [(0, 5), (6, 11)]) == [None, 0, 1, 1, None]


def test_conll_sentences_split_by_seed(tmp_path: Path, conll_file: Path) -> None:
    from forge.data.conll import build_conll_datasets
    from forge.recipe.validate import resolve

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name_or_path: 'forge:tiny-bert', task: token_classification}}\n"
                      f"data: {{sources: [{{path: {conll_file}, format: conll}}], split: {{validation: 0.25, "
                      f"test: 0.25}}}}\n", encoding="utf-8")
    bundle = build_conll_datasets(resolve(recipe).recipe)
    sizes = (len(bundle.train), len(bundle.validation), len(bundle.test))
    assert sizes == (24, 12, 12)
    ids = [set(d["id"]) for d in (bundle.train, bundle.validation, bundle.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert bundle.train.features["tags"].feature.names == ["O", "B-GENE", "I-GENE"]
    again = build_conll_datasets(resolve(recipe).recipe)
    assert set(again.test["id"]) == ids[2]


def test_data_preview_shows_tagged_sentences(tmp_path: Path, conll_file: Path) -> None:
    from forge.data.preview import format_preview, preview
    from forge.recipe.validate import resolve

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {{name_or_path: 'forge:tiny-bert', task: token_classification}}\n"
                      f"data: {{sources: [{{path: {conll_file}, format: conll}}]}}\n", encoding="utf-8")
    data = preview(resolve(recipe).recipe, n=2)
    assert data["format"] == "conll" and len(data["examples"]) == 2
    first = data["examples"][0]
    assert len(first["words"].split()) == len(first["tags"].split()) and "B-GENE" in first["tags"]
    assert "conll examples from 1 source file" in format_preview(data)

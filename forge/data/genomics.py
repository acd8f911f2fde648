"""Genomics notation for the `normalize_genomics` step: one canonical spelling for p-values, units,
chromosomes, rs IDs, HGVS variants, gene symbol case and Greek letters, so the model sees one form.

Every rule fixes only what is unambiguous: a lower-case word becomes a gene symbol only when it spells a
known symbol that is not also an English word; HGVS letters change only inside c./g./p. notation.
Applying the function twice gives the same text as applying it once.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Literal

from forge.data.vocabulary import AMBIGUOUS_SYMBOLS, GENE_SYMBOLS, GREEK_NAMES

GreekMode = Literal["names", "symbols", "keep"]

# ------------------------------------------------------------------------------------------ p-values
_NUM = r"(\d*\.\d+|\d+)"
P_VALUE = re.compile(
    rf"[Pp](?<![\w.][Pp])(?:[- ]?values?)?\s*(<=|>=|≤|≥|<|>|=|\bof\b|:)\s*{_NUM}"
    rf"(?:\s*[x×*·]\s*10\s*\^?\s*\{{?\s*([-−+]?)\s*(\d+)\}}?|[eE]([-−+]?\d+))?(?![\w.]*\d)")
_OPERATORS = {"<=": "≤", ">=": "≥", "of": "=", ":": "="}


def _p_value(match: re.Match[str]) -> str:
    operator, mantissa = _OPERATORS.get(match.group(1), match.group(1)), match.group(2)
    if mantissa.startswith("."):
        mantissa = "0" + mantissa
    if match.group(4) is not None:
        exponent = int(match.group(4)) * (-1 if match.group(3) in "-−" and match.group(3) else 1)
    elif match.group(5) is not None:
        exponent = int(match.group(5).replace("−", "-"))
    else:
        return f"p {operator} {mantissa}"
    return f"p {operator} {mantissa}e{exponent}"


# ------------------------------------------------------------------------------------------------- units
_UNIT_FORMS = {
    "M": "M", "mM": "mM", "uM": "μM", "µM": "μM", "μM": "μM", "nM": "nM", "pM": "pM", "fM": "fM",
    "micromolar": "μM", "nanomolar": "nM", "millimolar": "mM",
    "mg": "mg", "ug": "μg", "µg": "μg", "μg": "μg", "mcg": "μg", "ng": "ng", "pg": "pg", "kg": "kg",
    "ml": "mL", "mL": "mL", "ul": "μL", "uL": "μL", "µl": "μL", "µL": "μL", "μl": "μL", "μL": "μL", "nl": "nL", "nL": "nL",
    "bp": "bp", "kb": "kb", "Kb": "kb", "KB": "kb", "kbp": "kb", "Mb": "Mb", "Mbp": "Mb", "Gb": "Gb",
    "kDa": "kDa", "KDa": "kDa", "kda": "kDa", "kD": "kDa",
    "°C": "°C", "ºC": "°C", "° C": "°C",
}
_UNIT_NAMES = "|".join(sorted((re.escape(u) for u in _UNIT_FORMS), key=len, reverse=True))
_UNIT_FIRST = re.escape("".join(sorted({u[0] for u in _UNIT_FORMS})))
UNIT = re.compile(rf"(?<![\w.])(\d+(?:\.\d+)?)\s?(?=[{_UNIT_FIRST}])({_UNIT_NAMES})(?=/|[^\w/]|$)")
PERCENT = re.compile(r"(\d) +%")
PER_UNIT = re.compile(r"(?<=[A-Za-zμ])/(ml|mL|ul|uL|µl|µL|μl|μL|kg)\b")


def _unit(match: re.Match[str]) -> str:
    return f"{match.group(1)} {_UNIT_FORMS[match.group(2)]}"


# ---------------------------------------------------------------------------------- chromosomes, rs IDs
CHROMOSOME = re.compile(r"[cC](?<!\w[cC])(?:hr|HR)\s?(\d{1,2}|[XYxy]|MT|M)([pPqQ]\d{1,2}(?:\.\d{1,3})?)?(?![\w])")
CHROMOSOME_WORD = re.compile(r"\b([Cc]hromosome)(\d{1,2}|X|Y)(?=[pq]\d|\b)")  # chromosome7, chromosome11p15
BAND = re.compile(r"[PQ](?=\d{1,2}(?:\.\d{1,3})?\b)")  # 7Q31: the arm letter; the callback checks what precedes
_BAND_BEFORE = re.compile(r"(?:^|[^\w])(?:\d{1,2}|X|Y)$")
RS_ID = re.compile(r"[rR][sS](?<!\w[rR][sS])\s?#?\s?(\d{3,})\b")

# ---------------------------------------------------------------------------------------------------- HGVS
_POS = r"\*?-?\d+(?:[+-]\d+)?"
HGVS_SUBSTITUTION = re.compile(rf"([cgmn])\.(?<!\w[cgmn]\.)\s?({_POS})\s?([ACGTacgt])\s?>\s?([ACGTacgt])(?![A-Za-z])")
HGVS_INDEL = re.compile(rf"([cgmn])\.(?<!\w[cgmn]\.)\s?({_POS}(?:_{_POS})?)\s?(delins|del|dup|ins|inv)([ACGTacgt]*)(?![A-Za-z])",
                        re.IGNORECASE)
HGVS_PROTEIN = re.compile(r"p\.(?<!\wp\.)\s?([(\[]?[A-Za-z]{3}\d[^\s,]*)")
AMINO_ACIDS = {a.lower(): a for a in ("Ala Arg Asn Asp Cys Gln Glu Gly His Ile Leu Lys Met Phe Pro Ser Thr Trp "
                                      "Tyr Val Ter Sec Pyl Xaa").split()}
_THREE_LETTERS = re.compile(r"[A-Za-z]{3}")


def _protein(match: re.Match[str]) -> str:
    fixed = _THREE_LETTERS.sub(lambda m: AMINO_ACIDS.get(m.group(0).lower(), m.group(0)), match.group(1))
    return f"p.{fixed}"


# ----------------------------------------------------------------------------------------------- Greek
_GREEK_CHARS = "".join(GREEK_NAMES)
GREEK_CHAR = re.compile(f"[{_GREEK_CHARS}]")
_UNIT_MU = re.compile(r"(?:\d ?|/)μ[MgLlm]")
_NAMES = "|".join(sorted((n for n in GREEK_NAMES.values() if n.islower()), key=len, reverse=True))
# A Greek name is written as a letter only where it is part of a symbol: TNF-alpha, PPARgamma, NF-kappaB,
# beta-catenin. The word "alpha" on its own (a significance level) stays a word.
GREEK_NAME = re.compile(rf"(?<=[A-Za-z0-9]-)({_NAMES})(?![a-z])|(?<=[A-Z0-9])({_NAMES})(?![a-z])|"
                        rf"\b({_NAMES})(?=-[A-Za-z0-9])")
_GREEK_BY_NAME = {name: char for char, name in GREEK_NAMES.items()}

_LOWER_WORD = re.compile(r"\b[a-z][a-z0-9]*[a-z0-9]\b")


def _band_arm(match: re.Match[str]) -> str:
    start = match.start()
    return match.group(0).lower() if _BAND_BEFORE.search(match.string, max(0, start - 3), start) else match.group(0)


def _greek_name(match: re.Match[str]) -> str:
    start = match.start()
    # μ after a number or a slash is a unit prefix (5 μM, ng/μL), which stays a symbol.
    if match.group(0) == "μ" and any(_UNIT_MU.match(match.string, i) for i in range(max(0, start - 2), start)):
        return match.group(0)
    return GREEK_NAMES[match.group(0)]


def normalize_genomics(text: str, greek: GreekMode = "names", gene_case: bool = True,
                       symbols: Collection[str] | Mapping[str, str] = (), p_values: bool = True, units: bool = True,
                       chromosomes: bool = True, variants: bool = True) -> str:
    """The text with canonical genomics notation; `symbols` adds gene symbols (e.g. a paper's gold genes)
    to the built-in vocabulary for the case fix, or is a ready `symbol_case_map`."""
    if units:
        text = UNIT.sub(_unit, text)
        if "%" in text:
            text = PERCENT.sub(r"\1%", text)
        if "/" in text:
            text = PER_UNIT.sub(lambda m: "/" + _UNIT_FORMS[m.group(1)], text)
    if p_values and ("p" in text or "P" in text):
        text = P_VALUE.sub(_p_value, text)
    if chromosomes:
        text = CHROMOSOME.sub(lambda m: f"chr{m.group(1).upper()}{(m.group(2) or '').lower()}", text)
        if "hromosome" in text:
            text = CHROMOSOME_WORD.sub(r"\1 \2", text)
        text = BAND.sub(_band_arm, text)
    if variants:
        text = RS_ID.sub(r"rs\1", text)
        if ">" in text:
            text = HGVS_SUBSTITUTION.sub(
                lambda m: f"{m.group(1)}.{m.group(2)}{m.group(3).upper()}>{m.group(4).upper()}", text)
        text = HGVS_INDEL.sub(lambda m: f"{m.group(1).lower()}.{m.group(2)}{m.group(3).lower()}{m.group(4).upper()}",
                              text)
        if "p." in text:
            text = HGVS_PROTEIN.sub(_protein, text)
    if gene_case:
        text = fix_gene_case(text, symbols)
    if greek == "names" and not text.isascii():
        text = GREEK_CHAR.sub(_greek_name, text)
    elif greek == "symbols":
        text = GREEK_NAME.sub(lambda m: _GREEK_BY_NAME[next(g for g in m.groups() if g)], text)
    return text


def _case_entries(symbols: Iterable[str]) -> dict[str, str]:
    return {s.lower(): s for s in symbols if len(s) >= 3 and s.upper() not in AMBIGUOUS_SYMBOLS and s.lower() != s}


# Built once: the step asks for a map per paper (the paper's genes on top of these).
BUILTIN_CASE_MAP: Mapping[str, str] = MappingProxyType(_case_entries(sorted(GENE_SYMBOLS)))


def symbol_case_map(symbols: Collection[str] = ()) -> Mapping[str, str]:
    """Lower-case spelling -> symbol, for the built-in symbols and these, leaving out the ambiguous ones."""
    extra = _case_entries(symbols)
    return {**BUILTIN_CASE_MAP, **extra} if extra else BUILTIN_CASE_MAP


def fix_gene_case(text: str, symbols: Collection[str] | Mapping[str, str] = ()) -> str:
    """Upper-case gene symbols written in lower case (brca1 -> BRCA1) where the word cannot be English.

    Mixed case is left alone: Brca1 is the mouse convention and mTOR a protein name."""
    lowered = symbols if isinstance(symbols, Mapping) else symbol_case_map(symbols)
    found = {w for w in _LOWER_WORD.findall(text) if w in lowered}
    if not found:
        return text
    pattern = re.compile(r"(?<![\w.-])(" + "|".join(sorted(map(re.escape, found), key=len, reverse=True)) + r")(?![\w])")
    return pattern.sub(lambda m: lowered[m.group(1)], text)

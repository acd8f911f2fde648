"""Markup removal for the `strip_markup` step: HTML tags and entities, LaTeX commands and math delimiters,
Markdown emphasis, links and headings. The words inside markup stay; only the markup goes.

Each family is touched only when its trigger character is present, and HTML tags are matched by name,
so `p<0.05 and q>1` is never taken for a tag.
"""
from __future__ import annotations

import html
import re

_HTML_TAGS = ("a|abbr|article|b|big|blockquote|body|br|caption|cite|code|dd|div|dl|dt|em|figcaption|figure|font|"
              "footer|h[1-6]|head|header|hr|html|i|img|italic|bold|li|mark|ol|p|pre|s|section|small|span|strike|strong|"
              "sub|sup|table|tbody|td|th|thead|tr|tt|u|ul")
_DROP_WITH_CONTENT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(r"<\s*/?\s*(?:br|p|div|li|tr|h[1-6]|section|article|blockquote|table|ul|ol)\b[^<>]*>",
                        re.IGNORECASE)
_SUP = re.compile(r"(.?)<sup\b[^<>]*>(.*?)</sup\s*>", re.IGNORECASE | re.DOTALL)
_ANY_TAG = re.compile(rf"<\s*/?\s*(?:{_HTML_TAGS})\b(?:\s[^<>]*)?/?\s*>", re.IGNORECASE)
_EXPONENT = re.compile(r"^[-\u2212+]?\d+$")
_CITATION_LIST = re.compile(r"^\s*\d+(?:\s*[-,\u2013]\s*\d+)*\s*$")

LATEX_SYMBOLS = {
    "alpha": "\u03b1", "beta": "\u03b2", "gamma": "\u03b3", "delta": "\u03b4", "epsilon": "\u03b5",
    "varepsilon": "\u03b5", "zeta": "\u03b6", "eta": "\u03b7", "theta": "\u03b8", "iota": "\u03b9",
    "kappa": "\u03ba", "lambda": "\u03bb", "mu": "\u03bc", "nu": "\u03bd", "xi": "\u03be", "pi": "\u03c0",
    "rho": "\u03c1", "sigma": "\u03c3", "tau": "\u03c4", "upsilon": "\u03c5", "phi": "\u03c6", "varphi": "\u03c6",
    "chi": "\u03c7", "psi": "\u03c8", "omega": "\u03c9", "Gamma": "\u0393", "Delta": "\u0394", "Theta": "\u0398",
    "Lambda": "\u039b", "Sigma": "\u03a3", "Phi": "\u03a6", "Psi": "\u03a8", "Omega": "\u03a9",
    "times": "\u00d7", "pm": "\u00b1", "le": "\u2264", "leq": "\u2264", "ge": "\u2265", "geq": "\u2265",
    "approx": "\u2248", "sim": "~", "neq": "\u2260", "cdot": "\u00b7", "circ": "\u00b0", "degree": "\u00b0",
    "to": "\u2192", "rightarrow": "\u2192", "leftarrow": "\u2190", "infty": "\u221e", "%": "%", "&": "&",
    "_": "_", "#": "#", "$": "$", "{": "{", "}": "}", ",": " ", ";": " ", " ": " ", "ldots": "...", "dots": "...",
}
_LATEX_DROP = re.compile(r"[ \t]*~?\\(?:cite[a-z]*|ref|eqref|autoref|cref|label|includegraphics|bibliography|"
                         r"bibliographystyle|footnote|url)\*?(?:\[[^\]]*\])*\{[^{}]*\}")
_LATEX_ENV = re.compile(r"\\(?:begin|end)\{[^{}]*\}(?:\[[^\]]*\])?")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX_ARG_COMMAND = re.compile(r"\\[A-Za-z]+\*?(?:\[[^\]]*\])?\{([^{}]*)\}")
_LATEX_SYMBOL = re.compile(r"\\([A-Za-z]+|[%&_#${},; ])(?![A-Za-z])")
_MATH = re.compile(r"\$\$(.+?)\$\$|\$([^$\n]{1,300}?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_SCRIPT = re.compile(r"([\^_])\{([^{}]*)\}")
_MATHLIKE = re.compile(r"[\\^_{}=<>]|^[A-Za-z]{1,3}\d*$")  # "$5 and $6" is money, "$p<0.05$" is math

_MD_FENCE = re.compile(r"^\s*(```|~~~).*$", re.MULTILINE)
_MD_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$", re.MULTILINE)
_MD_RULE = re.compile(r"^[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_MD_QUOTE = re.compile(r"^[ \t]*>[ \t]?", re.MULTILINE)
_MD_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((?:https?://|/|#|\.)[^)\n]*\)")
# __strong__ only between non-word characters, as CommonMark has it: snake__case stays.
_MD_STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_MD_EM = re.compile(r"(?<![\w*])\*(?=[^\s*])([^*\n]+?)(?<=\S)\*(?![\w*])|(?<![\w])_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)")
_MD_CODE = re.compile(r"`([^`\n]+)`")


def strip_html(text: str) -> str:
    """Tags go (block tags become line breaks), entities are decoded; <sup> after a number is an exponent."""
    text = _DROP_WITH_CONTENT.sub("", text)
    text = _SUP.sub(_superscript, text)
    text = _BLOCK_TAG.sub("\n", text)
    text = _ANY_TAG.sub("", text)
    return html.unescape(text) if "&" in text else text


def _superscript(match: re.Match[str]) -> str:
    before, content = match.group(1), _ANY_TAG.sub("", match.group(2)).strip()
    if before.isdigit() and _EXPONENT.match(content):  # 10<sup>-8</sup>; not TP53<sup>R175H</sup>
        return f"{before}^{content}"
    if _CITATION_LIST.match(content):  # a superscript reference list: word<sup>1,2</sup>
        return before
    return before + content


def strip_latex(text: str) -> str:
    """Math delimiters go (their content stays), citation-like commands go, formatting commands leave
    their argument, and symbol commands become the character they name (\\alpha -> α)."""
    text = _MATH.sub(_math, text)
    if "\\" not in text:
        return text
    text = _LATEX_DROP.sub("", text)
    text = _LATEX_ENV.sub("", text).replace("\\\\", "\n")  # a line break, before "\\b" can pass for a command
    before = None
    while before != text:  # innermost arguments first: \textbf{\textit{BRCA1}}
        before = text
        text = _LATEX_FRAC.sub(r"\1/\2", text)
        text = _LATEX_ARG_COMMAND.sub(r"\1", text)
    text = _LATEX_SYMBOL.sub(lambda m: LATEX_SYMBOLS.get(m.group(1), ""), text)
    return text.replace("{", "").replace("}", "")


def _math(match: re.Match[str]) -> str:
    content = next(g for g in match.groups() if g is not None)
    if match.group(2) is not None and not _MATHLIKE.search(content.strip()):
        return match.group(0)
    # Symbols first: once the delimiters are gone, "$\\mu$M" would read as the command \muM.
    content = _LATEX_SYMBOL.sub(lambda m: LATEX_SYMBOLS.get(m.group(1), m.group(0)), content)
    before = None
    while before != content:
        before = content
        content = _SCRIPT.sub(lambda m: ("^" if m.group(1) == "^" else "") + m.group(2), content)
    content = re.sub(r"_(\w)", r"\1", content)
    return content.strip()


def strip_markdown(text: str) -> str:
    """Headings, emphasis, links, images, code spans, quotes and rules lose their markup."""
    if "`" in text or "~~~" in text:
        text = _MD_FENCE.sub("", text)
        text = _MD_CODE.sub(r"\1", text)
    if "#" in text:
        text = _MD_HEADING.sub(r"\1", text)
    if "[" in text:
        text = _MD_IMAGE.sub(r"\1", text)
        text = _MD_LINK.sub(r"\1", text)
    if "*" in text or "_" in text or "---" in text:
        text = _MD_RULE.sub("", text)
        text = _MD_STRONG.sub(_either_group, text)
        text = _MD_EM.sub(_either_group, text)
    if ">" in text:
        text = _MD_QUOTE.sub("", text)
    return text


def _either_group(match: re.Match[str]) -> str:
    return match.group(1) if match.group(1) is not None else match.group(2)


def strip_markup(text: str, html_tags: bool = True, latex: bool = True, markdown: bool = True) -> str:
    """The text without HTML, LaTeX and Markdown markup, in that order (HTML can wrap the others)."""
    if html_tags and ("<" in text or "&" in text):
        text = strip_html(text)
    if latex and ("\\" in text or "$" in text):
        text = strip_latex(text)
    if markdown:
        text = strip_markdown(text)
    return text

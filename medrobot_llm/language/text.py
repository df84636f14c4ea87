"""Raw text to tokens: the first step of every reader of English (both planners and the voice grammar).

One tokenizer means "2cm", "x-ray" and a full-width "ｉｇｎｏｒｅ" are read the same way by the rule planner,
the LLM planner's grounding check and the safety screen.
"""

from __future__ import annotations

import re
import unicodedata

from medrobot_llm.language.numbers import normalise_numerals

__all__ = ["fold_text", "tokenize"]

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+(?:'[a-z]+)?|[%°/,;.?!:\"]")


def fold_text(text: str) -> str:
    """Non-ASCII letters and digits that stand for ASCII ones, as ASCII ("ｉｇｎｏｒｅ", "saféty", "２ cm").

    The tokenizer and the safety screen only read ASCII words: without folding, a full-width or accented
    spelling slipped past the screen, and the planner built a plan from the words left over. Invisible format
    characters (zero-width space, soft hyphen) are dropped, so they cannot split a word either. Only letters
    (ligatures too) and decimal digits are folded: "½" or "²" would turn into digits ("cm²" -> "cm2"), and a
    number that was never said must not reach a plan.
    """
    if text.isascii():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue
        if cat[0] == "L" or cat == "Nd":
            folded = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if folded.isascii() and (folded.isalpha() or (len(folded) == 1 and folded.isdigit())):
                out.append(folded)
                continue
        out.append(ch)
    return "".join(out)


def tokenize(text: str) -> list[str]:
    """Lower-case word, number and punctuation tokens; digits are split from units ("2cm" -> 2, cm)."""
    text = fold_text(normalise_numerals(text)).lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("x-ray", "xray").replace("x ray", "xray").replace("e-stop", "estop")
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)
    # "A.P.", "a.p": initials with dots are one word ("ap"), not letters and full stops
    text = re.sub(r"\b[a-z](?:\.[a-z])+\b\.?", lambda m: m.group(0).replace(".", ""), text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return _TOKEN.findall(text)

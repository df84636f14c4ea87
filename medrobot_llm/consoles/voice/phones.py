"""Pronunciations for the decoder's dictionary: every grammar word needs one in the acoustic model's phones.

Words that are not in pocketsphinx's dictionary get one here: abbreviations are spelled letter by letter
("psm" = P S M), compounds and suffixed forms are built from their parts ("thighbone", "newtons",
"caudally"), and the rest are written out by hand. Each gets a southern British variant beside CMUdict's
American one, because the acoustic model scores a British speaker against the American phones.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

__all__ = [
    "LETTERS",
    "PRONUNCIATIONS",
    "SPELLED",
    "acoustic_dictionary",
    "british",
    "derive",
    "pronunciations",
]

# Letter names, for abbreviations said letter by letter.
LETTERS: dict[str, str] = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY", "h": "EY CH",
    "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N", "o": "OW", "p": "P IY",
    "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW", "v": "V IY", "w": "D AH B AH L Y UW",
    "x": "EH K S", "y": "W AY", "z": "Z IY",
}

#: abbreviations people say letter by letter, whether or not the dictionary has them as a word
SPELLED: frozenset[str] = frozenset("psm psms cbct lpo rpo lao rao gb si ap pa mm cm ct ecm".split())

# Words of the command set the dictionary lacks and that cannot be built from parts (ARPAbet).
PRONUNCIATIONS: dict[str, tuple[str, ...]] = {
    "acetabulum": ("AE S AH T AE B Y AH L AH M",),
    "angulation": ("AE NG G Y AH L EY SH AH N",),
    "antero": ("AE N T ER OW",),
    "anteroposterior": ("AE N T ER OW P AA S T IH R IY ER",),
    "cannula": ("K AE N Y AH L AH",),
    "cannulate": ("K AE N Y AH L EY T",),
    "collimate": ("K AA L AH M EY T",),
    "collimation": ("K AA L AH M EY SH AH N",),
    "collimator": ("K AA L AH M EY T ER",),
    "estop": ("IY S T AA P",),
    "fluoro": ("F L UH R OW",),
    "radiograph": ("R EY D IY OW G R AE F",),
    "sacral": ("S EY K R AH L",),
    "sacroiliac": ("S AE K R OW IH L IY AE K",),
    "sacrum": ("S EY K R AH M", "S AE K R AH M"),
    "coccyx": ("K AA K S IH K S",),
    "ligate": ("L AY G EY T",),
    "resect": ("R IY S EH K T",),
    "cautery": ("K AO T ER IY",),
    "cauterise": ("K AO T ER AY Z",),
    "oesophagus": ("IH S AA F AH G AH S",),
    "tumour": ("T UW M ER",),
    "ulna": ("AH L N AH",),
    "testis": ("T EH S T IH S",),
    "centi": ("S EH N T IY",),
    "xray": ("EH K S R EY",),
    "xrays": ("EH K S R EY Z",),
    "bmode": ("B IY M OW D",),
    "grayscale": ("G R EY S K EY L",),
    "greyscale": ("G R EY S K EY L",),
    "visualise": ("V IH ZH W AH L AY Z",),
    "ungrasp": ("AH N G R AE S P",),
}

#: abbreviations that are also said (and by espeak-ng read) as one word: "ap" is "AE P" as well as "a p"
_AS_WORD: dict[str, tuple[str, ...]] = {
    "ap": ("AE P",),
    "pa": ("P AA",),
    "gb": ("G AH B",),
}

@functools.cache
def acoustic_dictionary() -> dict[str, tuple[str, ...]]:
    """The pronunciations of pocketsphinx's US English model (CMUdict), read without importing the
    recogniser itself so the grammar can be generated and checked cheaply."""
    spec = importlib.util.find_spec("pocketsphinx")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pocketsphinx is not installed; the voice grammar needs its dictionary "
                           "(pip install pocketsphinx)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "en-us" / "cmudict-en-us.dict"
    prons: dict[str, list[str]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            word = re.sub(r"\(\d+\)$", "", parts[0])
            prons.setdefault(word, []).append(" ".join(p for p in parts[1:] if not p.startswith("#")))
    return {w: tuple(p) for w, p in prons.items()}


def _spelled(word: str) -> str:
    return " ".join(LETTERS[c] for c in word if c in LETTERS)


def _voiced_plural(pron: str) -> str:
    last = pron.split()[-1]
    if last in ("S", "Z", "SH", "ZH", "CH", "JH"):
        return pron + " IH Z"
    return pron + (" S" if last in ("P", "T", "K", "F", "TH") else " Z")


def derive(word: str, dic: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """A pronunciation built from known parts: a suffix on a known word, or two known words."""
    if word in SPELLED and word.endswith("s") and word[:-1] in SPELLED:
        return (_spelled(word[:-1]) + " Z",)
    if word in SPELLED:
        return (_spelled(word),)
    for suffix, add in (("s", None), ("ly", "L IY"), ("er", "ER")):
        stem = word[:-len(suffix)]
        if not word.endswith(suffix) or len(stem) < 3:
            continue
        if suffix == "ly" and stem.endswith("l"):
            add = "IY"
        if stem in dic:
            if add is None:
                return tuple(_voiced_plural(p) for p in dic[stem][:1])
            return (f"{dic[stem][0]} {add}",)
    for i in range(len(word) - 3, 1, -1):
        left, right = word[:i], word[i:]
        if left in dic and right in dic and len(right) >= 3 and (len(left) >= 3 or left in ("un", "re")):
            return (f"{dic[left][0]} {dic[right][0]}",)
    if word.startswith("un") and word[2:] in dic:
        return (f"AH N {dic[word[2:]][0]}",)
    return None


_VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
#: words said unstressed in a command, whose AH is a schwa ("from", "what", "then")
_SCHWA_WORDS = frozenset("from what does done some must such than them then this that with".split())


def british(pron: str, word: str = "") -> str:
    """The same word in southern British English, from its American (CMUdict) phones.

    CMUdict is American, and the acoustic model scores a British speaker against it: "liver" said
    /lɪvə/ lost to "lumen", "ap" said /ap/ to "orbit". Three regular differences account for most of it:
    no /r/ after a vowel unless a vowel follows ("arms" /ɑːmz/, "liver" /lɪvə/, but "lateral" keeps it),
    the TRAP vowel open like AA rather than AE ("scan", "pelvis" is unchanged, "ap", "gantry"), and the
    GOAT diphthong starting central (/əʊ/, "locate", "home"); and the STRUT vowel open like AA where AH must
    be stressed, in a content word of one syllable ("shunt"). Rules rather than a list, so every word of
    the command set, present or future, gets its variant.
    """
    ph = pron.split()
    out: list[str] = []
    # the STRUT vowel, open in the south of England: CMUdict's AH is both it and the unstressed schwa, but
    # in a content word of one syllable it can only be the stressed vowel ("shunt" /ʃɐnt/ lost to "muscle")
    strut = [p for p in ph if p in _VOWELS] == ["AH"] and len(word) >= 4 and word not in _SCHWA_WORDS
    for i, p in enumerate(ph):
        nxt = ph[i + 1] if i + 1 < len(ph) else None
        if p == "R" and out and out[-1] in _VOWELS and (nxt is None or nxt not in _VOWELS):
            continue
        if p == "ER":
            out += ["AH", "R"] if nxt in _VOWELS else ["AH"]
        elif p == "AE" or (p == "AH" and strut):
            out.append("AA")
        elif p == "AA" and "o" in word:
            out.append("AO")
        elif p == "OW":
            out += ["AH", "UW"]
        else:
            out.append(p)
    return " ".join(out)


def _with_british(prons: tuple[str, ...], word: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*prons, *(british(p, word) for p in prons)]))


def pronunciations(word: str) -> tuple[tuple[str, ...], str]:
    """Every pronunciation of ``word`` (American and British) and where it came from: "dictionary",
    "table", "derived" or "spelled" (the last resort: letter by letter, which the grammar test refuses for
    skill words)."""
    dic = acoustic_dictionary()
    extra = ((_spelled(word),) if word in SPELLED else ()) + _AS_WORD.get(word, ())
    if word in PRONUNCIATIONS:
        return _with_british(PRONUNCIATIONS[word] + extra, word), "table"
    if word in dic:
        return _with_british(tuple(dict.fromkeys(dic[word] + extra)), word), "dictionary"
    derived = derive(word, dic)
    if derived is not None:
        return _with_british(derived, word), "derived"
    return _with_british((_spelled(word),), word), "spelled"

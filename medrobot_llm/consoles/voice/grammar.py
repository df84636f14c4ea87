"""The speech grammar, generated from ``skills/`` so that what the recogniser can hear is exactly what the
planner can read.

A closed grammar is what makes an offline recogniser usable in a theatre: pocketsphinx with a free
language model mishears clinical words, with a grammar it only has to choose among the command set's
own phrases. Each skill is a few fixed frames: its verb, then its own arguments in one order (what it
acts on, then the arm, then other choices, then numbers), each after the one preposition English puts
there. Free word order and optional short words between slots let the decoder explain any stretch of
audio by short words ("and mm only you mm where" for "scan the liver"), so the frames trade phrasing
freedom for accuracy; the text console takes anything the planner reads. Words the planner refuses by name (unsupported actions and organs, other domains' targets) are in
the grammar too: a word the recogniser cannot hear is replaced by the nearest word it can, and "cut the
vessel" must not come out as "put the vessel".

Every grammar word needs a pronunciation in the acoustic model's dictionary. Words that are not there
get one here: abbreviations are spelled letter by letter ("psm" = P S M), compounds and suffixed forms
are built from their parts ("thighbone", "newtons", "caudally"), and the rest are written out by hand.
What comes back is normalised to the planner's spelling ("psm one" -> "psm1", "l four" -> "L4").
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from medrobot_llm.language.lexicon import shared_vocabulary
from medrobot_llm.language.numbers import SIGN_WORDS, SPOKEN_ONES, SPOKEN_TENS, number_words
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import (
    CONTROL_PHRASES,
    LABEL_WORDS,
    SMALL_AMOUNT,
    UNSUPPORTED_ACTIONS,
    UNSUPPORTED_TARGETS,
)
from medrobot_llm.core.command_set import DOMAINS, ArgSpec, CommandSet, EntityValue, SkillSpec, load_command_set
from medrobot_llm.core.units import DIMENSION_OF_UNIT, UNIT_WORDS

__all__ = [
    "VoiceGrammar",
    "acoustic_dictionary",
    "build_grammar",
    "domain_words",
    "normalise_transcript",
    "number_words",
    "spoken_words",
]

#: the largest whole number the grammar has; plan ranges stop at 400 mm, but people say "20 by 40 cm"
MAX_NUMBER = 200

# Letter names, for abbreviations said letter by letter.
_LETTERS: dict[str, str] = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY", "h": "EY CH",
    "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N", "o": "OW", "p": "P IY",
    "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW", "v": "V IY", "w": "D AH B AH L Y UW",
    "x": "EH K S", "y": "W AY", "z": "Z IY",
}

#: abbreviations people say letter by letter, whether or not the dictionary has them as a word
_SPELLED: frozenset[str] = frozenset("psm psms cbct lpo rpo lao rao gb si ap pa mm cm ct ecm".split())

# Words of the command set the dictionary lacks and that cannot be built from parts (ARPAbet).
_PRONUNCIATIONS: dict[str, tuple[str, ...]] = {
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

#: written forms the planner knows that are never said as they are written (symbols, digit words)
_UNSPOKEN = frozenset('" % . / , ; : ? ! ° \''.split() + ["s", "sec", "deg", "degs", "pct", "mms", "cms", "rad"])

def _spoken_number(token: str) -> list[str]:
    if "." in token:
        whole, frac = token.split(".", 1)
        return [*number_words(int(whole or "0")), "point", *(SPOKEN_ONES[int(d)] for d in frac)]
    return number_words(int(token))


def spoken_words(text: str) -> list[str]:
    """The words a person says for written ``text``: digits become number words, "psm1" becomes
    "psm one", symbols that nobody pronounces are dropped. Lower case, like the planner's tokens."""
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text.lower())
    text = text.replace("%", " percent ").replace("°", " degrees ")
    out: list[str] = []
    for tok in tokenize(text):
        if re.fullmatch(r"\d+(\.\d+)?", tok):
            out.extend(_spoken_number(tok))
        elif tok not in _UNSPOKEN:
            out.append(tok)
    return out


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
    return " ".join(_LETTERS[c] for c in word if c in _LETTERS)


def _voiced_plural(pron: str) -> str:
    last = pron.split()[-1]
    if last in ("S", "Z", "SH", "ZH", "CH", "JH"):
        return pron + " IH Z"
    return pron + (" S" if last in ("P", "T", "K", "F", "TH") else " Z")


def _derive(word: str, dic: dict[str, tuple[str, ...]]) -> tuple[str, ...] | None:
    """A pronunciation built from known parts: a suffix on a known word, or two known words."""
    if word in _SPELLED and word.endswith("s") and word[:-1] in _SPELLED:
        return (_spelled(word[:-1]) + " Z",)
    if word in _SPELLED:
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
    extra = ((_spelled(word),) if word in _SPELLED else ()) + _AS_WORD.get(word, ())
    if word in _PRONUNCIATIONS:
        return _with_british(_PRONUNCIATIONS[word] + extra, word), "table"
    if word in dic:
        return _with_british(tuple(dict.fromkeys(dic[word] + extra)), word), "dictionary"
    derived = _derive(word, dic)
    if derived is not None:
        return _with_british(derived, word), "derived"
    return _with_british((_spelled(word),), word), "spelled"


@dataclass(frozen=True)
class VoiceGrammar:
    """One domain's grammar, the pronunciations its words need, and the way back to written form."""

    domain: str
    jsgf: str
    words: frozenset[str]
    #: pronunciations for the decoder's dictionary: every grammar word, each with one or more phone strings
    dictionary: dict[str, tuple[str, ...]] = field(repr=False)
    #: how each word got its pronunciation ("dictionary", "table", "derived", "spelled")
    sources: dict[str, str] = field(repr=False)
    #: spoken word sequences that read back as one written token ("psm one" -> "psm1")
    written: dict[tuple[str, ...], str] = field(repr=False)
    #: the rules, by name, as lists of spoken phrases (for tests and for the keyword-spotting pass)
    rules: dict[str, tuple[str, ...]] = field(repr=False)

    def dictionary_text(self) -> str:
        """The decoder's dictionary file: one line per pronunciation, alternates numbered as in CMUdict."""
        lines = []
        for word in sorted(self.dictionary):
            for k, pron in enumerate(self.dictionary[word]):
                lines.append(f"{word if k == 0 else f'{word}({k + 1})'} {pron}")
        return "\n".join(lines) + "\n"

    def normalise(self, transcript: str) -> str:
        return normalise_transcript(transcript, self.written)


def _phrases(items: list[str]) -> list[str]:
    """Spoken forms of written phrases, deduplicated, in a stable order."""
    out: dict[str, None] = {}
    for item in items:
        words = spoken_words(item)
        if words:
            out[" ".join(words)] = None
    return list(out)


def domain_words(domain: str) -> dict[str, frozenset[str]]:
    """The words the grammar must contain, by kind, straight from the skill file (the test's oracle)."""
    cs = load_command_set(domain)
    kinds: dict[str, set[str]] = {"skill": set(), "entity": set(), "control": set(), "keyword": set()}
    for skill in cs.skills.values():
        for p in (*skill.synonyms, skill.name.replace("_", " "), *skill.implied):
            kinds["skill"].update(spoken_words(p))
        for arg in skill.args.values():
            for k in arg.keywords:
                kinds["keyword"].update(spoken_words(k))
    for task in cs.tasks.values():
        for p in task.synonyms:
            kinds["skill"].update(spoken_words(p))
    for etype, ent in cs.entities.items():
        key = "entity"
        for value, ev in ent.values.items():
            for p in (*ev.synonyms, value.replace("_", " "), *ev.positive, *ev.negative):
                kinds.setdefault(etype, set()).update(spoken_words(p))
                kinds[key].update(spoken_words(p))
    for phrases in CONTROL_PHRASES.values():
        for p in phrases:
            kinds["control"].update(spoken_words(p))
    return {k: frozenset(v) for k, v in kinds.items()}


def _written_forms(cs: CommandSet) -> dict[tuple[str, ...], str]:
    """Spoken sequences that read back as one written entity value: "psm one" -> psm1, "l four" -> L4,
    "a p" -> AP, "three d" -> 3D. Only for values whose written name is not itself said as one word."""
    out: dict[tuple[str, ...], str] = {}
    for ent in cs.entities.values():
        for value, ev in ent.values.items():
            written = value if value.startswith("psm") else value.upper()
            if not re.search(r"\d", value) and value not in _SPELLED:
                continue
            for syn in (value, *ev.synonyms):
                words = tuple(spoken_words(syn))
                if len(words) >= 2 and _compact(words) == value.lower():
                    out[words] = written
            if value in _SPELLED:
                out[tuple(value)] = written
    for skill in cs.skills.values():
        for syn in skill.synonyms:
            words = tuple(spoken_words(syn.split()[0]))
            if len(words) >= 2 and re.fullmatch(r"\d+[a-z]", _compact(words)):
                out[words] = _compact(words).upper()
    out[("c", "m")] = "cm"
    out[("m", "m")] = "mm"
    return out


def _compact(words: tuple[str, ...]) -> str:
    return "".join(str(SPOKEN_ONES.index(w)) if w in SPOKEN_ONES[:10] else w for w in words)


def normalise_transcript(transcript: str, written: dict[tuple[str, ...], str]) -> str:
    """The recogniser's words in the planner's spelling, longest spoken sequence first."""
    words = transcript.split()
    keys = sorted(written, key=len, reverse=True)
    out: list[str] = []
    i = 0
    while i < len(words):
        for key in keys:
            if tuple(words[i:i + len(key)]) == key:
                out.append(written[key])
                i += len(key)
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def _alternatives(phrases: list[str]) -> str:
    return " | ".join(phrases)


def _number_rules() -> dict[str, str]:
    digits = list(SPOKEN_ONES[1:10])
    teens = list(SPOKEN_ONES[10:20])
    tens = list(SPOKEN_TENS[2:])
    top = MAX_NUMBER // 100
    return {
        "digit": _alternatives([*SPOKEN_ONES[:10], "oh"]),
        "nonzero": _alternatives(digits),
        "below100": "<nonzero> | " + _alternatives(teens) + " | (" + _alternatives(tens) + ") [<nonzero>]",
        "whole": ("zero | <below100> | ((a | one) hundred [[and] <below100>]) | ("
                  + _alternatives(list(SPOKEN_ONES[2:top + 1])) + ") hundred [[and] <below100>]"),
        "number": "<whole> [(point <digit> [<digit>]) | (and a half) | (and a quarter)] | half | a half | "
                  "a quarter | one and a half",
    }


#: the words that join a verb to its arguments ("rotate the probe", "hand the needle over to psm2", "inlet
#: view of the pelvis"): a noun for the robot or the view, up to two prepositions, an article or pronoun and
#: again a noun, each optional and in that order, so the glue cannot explain arbitrary stretches of audio
_NOUNS = "robot arm system machine".split()
#: nouns for one kind of robot or imaging ("probe", "gantry"): glue only where the domain's own command set
#: uses them. In every grammar, "probe" let the x-ray decoder explain "collimate to the pelvis" as "do a tilt
#: the probe raise", a word no x-ray command has
_DOMAIN_NOUNS = "probe gantry patient patient's view side".split()
_PREPOSITIONS = "of to with at in on over into onto from for by toward towards".split()
_ARTICLES = "the a an it this that them".split()
#: what may open a command before its verb ("do a 3d spin")
_LEAD = ("do a", "do an", "perform a", "get a", "give me a")
#: what may close an utterance ("scan the liver please")
_TAIL = ("please", "now", "thanks", "thank you")
#: how much less likely than a command a refused phrase is. pocketsphinx adds a grammar weight to the path
#: score on a far smaller scale than the acoustic score: at 0.05 the refusal frame took "vessel" for
#: "muscle", "liver" for "lumen", "chest" for "tooth" (all refused targets, so the command was refused,
#: which is safe). At 1e-20 one more command of 102 came out right, but "scan the heart" came out as "scan
#: the aorta", a refusal heard as an action, which is not safe; 1e-10 hears all five refusals among them,
#: and at 1e-36 no refusal was heard at all
_RARE = 1e-10
#: how much less likely than a usual unit one is in which the argument's whole range is less than half a
#: unit (metres for a 200 mm move): "millimetres" came out as "metres" up to a weight of 1e-30. About the
#: smallest weight the decoder holds (a float), so such a unit is still heard when it is clearly said
_RARE_UNIT = 1e-37
#: how much less likely than one command two joined by "and" or "then" are: the join let the decoder explain
#: the end of one command as a second, short one ("insert and do a pull the vessel with psm2")
_SECOND = 1e-20


def _said(words: list[str]) -> bool:
    """True when every word has a real pronunciation (not only a spelling) or is an abbreviation."""
    return bool(words) and all(pronunciations(w)[1] != "spelled" or w in _SPELLED for w in words)


class _RuleBook:
    """JSGF rules under construction, with identical bodies shared under one name."""

    def __init__(self) -> None:
        self.bodies: dict[str, str] = {}
        self._by_body: dict[str, str] = {}

    def add(self, name: str, alternatives: list[str]) -> str:
        """A rule of ``alternatives`` (spoken phrases or expansions); returns its reference, "" if empty."""
        alts = [a for a in dict.fromkeys(alternatives) if a]
        if not alts:
            return ""
        body = _alternatives(alts)
        if body in self._by_body:
            return self._by_body[body]
        rule = re.sub(r"[^a-z0-9_]", "_", name.lower())
        k = 2
        base = rule
        while rule in self.bodies:
            rule, k = f"{base}_{k}", k + 1
        self.bodies[rule] = body
        self._by_body[body] = f"<{rule}>"
        return f"<{rule}>"


def _value_phrases(value: str, ev: EntityValue) -> list[str]:
    return _phrases([*ev.synonyms, value.replace("_", " "), *ev.positive, *ev.negative])


def _units_by_dimension() -> dict[str, list[tuple[str, float]]]:
    """Spoken unit phrases per dimension (length, angle, ...) with their size in the plan unit, from the unit
    table the planner converts with."""
    dic = acoustic_dictionary()
    out: dict[str, list[tuple[str, float]]] = {}
    for written, (dim, factor) in UNIT_WORDS.items():
        words = spoken_words(written)
        if not words or any(w in _UNSPOKEN for w in words):
            continue
        if len(words) == 1 and len(words[0]) <= 2 and words[0] not in _SPELLED:
            continue
        if all(w in dic or w in _SPELLED or w in _PRONUNCIATIONS or _derive(w, dic) for w in words):
            out.setdefault(dim, []).append((" ".join(words), factor))
    return {k: list(dict.fromkeys(v)) for k, v in out.items()}


def _arg_dimension(cs: CommandSet, skill: SkillSpec, arg: ArgSpec) -> list[str]:
    """The dimensions a numeric argument's unit may be in (an amount along an axis: every axis' unit)."""
    units: list[str] = []
    if arg.unit:
        units.append(arg.unit)
    if arg.unit_from:
        src = skill.args.get(arg.unit_from)
        if src is not None:
            for value in cs.allowed_values(src):
                ev = cs.entity_value(value, src)
                if ev is not None and ev.unit:
                    units.append(ev.unit)
    return list(dict.fromkeys(DIMENSION_OF_UNIT[u] for u in units if u in DIMENSION_OF_UNIT))


def _arg_limits(cs: CommandSet, skill: SkillSpec, arg: ArgSpec) -> dict[str, float]:
    """The largest magnitude a numeric argument may take, per dimension, in the plan unit (an amount along an
    axis: the widest range of the axes in that dimension)."""
    out: dict[str, float] = {}
    if arg.min is not None and arg.max is not None and arg.unit in DIMENSION_OF_UNIT:
        out[DIMENSION_OF_UNIT[arg.unit]] = max(abs(arg.min), abs(arg.max))
    src = skill.args.get(arg.range_from or "")
    if src is not None:
        for value in cs.allowed_values(src):
            ev = cs.entity_value(value, src)
            if ev is None or ev.min is None or ev.max is None:
                continue
            unit = ev.unit or arg.unit
            if unit in DIMENSION_OF_UNIT:
                dim = DIMENSION_OF_UNIT[unit]
                out[dim] = max(out.get(dim, 0.0), abs(ev.min), abs(ev.max))
    return out


def _may_be_negative(cs: CommandSet, skill: SkillSpec, arg: ArgSpec) -> bool:
    if arg.min is not None:
        return arg.min < 0
    src = skill.args.get(arg.range_from or "")
    if src is None:
        return False
    values = [cs.entity_value(v, src) for v in cs.allowed_values(src)]
    return any(ev is not None and ev.min is not None and ev.min < 0 for ev in values)


#: entity types that name a thing a command acts on or goes to: said as a noun phrase ("the left kidney")
_NOUN_ENTITIES = frozenset({"object", "place", "organ", "anatomy"})
#: entity types said as "<value> of the <noun>" ("ap of the pelvis", "inlet view of the pelvis")
_OF_ENTITIES = frozenset({"view"})


def _arg_kind(arg: ArgSpec) -> str:
    ents = set(arg.entities)
    if arg.type in ("number", "vector3"):
        return "number"
    if arg.type != "enum":
        return "text"
    for kind in ("arm", "side", "level"):
        if kind in ents:
            return kind
    if ents & _OF_ENTITIES:
        return "of"
    if ents & _NOUN_ENTITIES:
        return "noun"
    return "other"


def _arm_prepositions(name: str) -> list[str]:
    """One preposition per kind of arm argument: the tool ("with psm1"), the giver and the receiver."""
    if name.startswith("from"):
        return ["from"]
    if name.startswith("to"):
        return ["to", "over to"]
    return ["with"]


class _Builder:
    """Turns one command set into the grammar's rules: a few fixed frames per skill, no free glue.

    Every optional short word and every free slot order is a way for the decoder to explain audio by short
    words, so each skill has only: its verb, then its noun arguments ("[to] [the] [side] noun [level]"), its
    arms with one preposition each, its other enums, its numbers, in that order; or the verb with an arm
    right after it ("move psm1 to the handover point"); or, for views, "<view> [view] of the <anatomy>".
    """

    def __init__(self, domain: str, cs: CommandSet) -> None:
        self.domain = domain
        self.cs = cs
        self.book = _RuleBook()
        self.units = _units_by_dimension()
        self.phrases: dict[str, list[str]] = {k: [] for k in
                                              ("skill", "entity", "keyword", "control", "unit", "filler",
                                               "refused")}
        for _dim, said in self.units.items():
            self.phrases["unit"].extend(u for u, _f in said)
        numbers = _number_rules()
        for name, body in numbers.items():
            self.book.bodies[name] = body
        objects: list[str] = []
        ent = cs.entities.get("object")
        if ent is not None:
            for value, ev in ent.values.items():
                objects.extend(_value_phrases(value, ev))
        own = set().union(*domain_words(domain).values())
        self.thing = self.book.add("thing", [*_NOUNS, *(n for n in _DOMAIN_NOUNS if n in own), *objects])
        self.noun_phrases: list[str] = []

    def _enum_slot(self, arg: ArgSpec, skill: SkillSpec) -> str:
        """An enum argument's values with all their synonyms."""
        phrases: list[str] = []
        for value in self.cs.allowed_values(arg):
            ev = self.cs.entity_value(value, arg)
            if ev is not None:
                phrases.extend(_value_phrases(value, ev))
            else:
                phrases.extend(_phrases([value.replace("_", " ")]))
        self.phrases["entity"].extend(phrases)
        if set(arg.entities) & _NOUN_ENTITIES:
            self.noun_phrases.extend(phrases)
        return self.book.add(f"e_{'_'.join(arg.entities) or skill.name}", phrases)

    def _number_slot(self, arg: ArgSpec, skill: SkillSpec) -> str:
        """``[sign] <number> [unit]`` in the units the argument accepts, or a small amount ("a bit").

        A unit in which the whole range is less than half of one ("metres" for a 200 mm move) is still in
        the grammar, so "two metres" is heard and refused, but as a rare choice: "millimetres" said fast
        otherwise came out as "three metres" ("twenty millimetres" -> "twenty three metres")."""
        dims = _arg_dimension(self.cs, skill, arg)
        limits = _arg_limits(self.cs, skill, arg)
        usual: list[str] = []
        unusual: list[str] = []
        for d in dims:
            for said, factor in self.units.get(d, []):
                (usual if d not in limits or limits[d] >= factor / 2 else unusual).append(said)
        name = f"u_{'_'.join(dims) or 'none'}"
        unit_ref = self.book.add(name, usual)
        if unusual:
            rare = self.book.add(f"{name}_rare", unusual)
            unit_ref = self.book.add(f"{name}_any", [f"/1/ {unit_ref}", f"/{_RARE_UNIT}/ {rare}"])
        sign = f"[{_alternatives(list(SIGN_WORDS))}] " if _may_be_negative(self.cs, skill, arg) else ""
        quantity = f"{sign}<number>" + (f" [{unit_ref}]" if unit_ref else "")
        small = [" ".join(s) for s in SMALL_AMOUNT]
        return self.book.add(f"q_{'_'.join(dims) or 'plain'}_{'neg' if sign else 'pos'}", [quantity, *small])

    def _text_slot(self) -> str:
        """A label: a label word, then up to three letters or digits ("labelled l k")."""
        marks = self.book.add("label_word", sorted(LABEL_WORDS))
        items = self.book.add("label_item", [*sorted(_LETTERS), *SPOKEN_ONES[:10]])
        return f"{marks} {items} [{items} [{items}]]"

    def frames(self, name: str, verbs: list[str], args: list[tuple[str, ArgSpec]], skill_of: dict[str, SkillSpec]) -> tuple[list[str], list[str]]:
        """The word sequences after the verb (the first may be empty), and the verb-less "of" frame."""
        by_kind: dict[str, list[tuple[str, str]]] = {}
        arg_of = dict(args)
        setter = any(v.split()[0] in ("set", "change") for v in verbs)
        for aname, arg in args:
            kind = _arg_kind(arg)
            skill = skill_of[aname]
            if kind == "number":
                ref = self._number_slot(arg, skill)
            elif kind == "text":
                ref = self._text_slot()
            else:
                ref = self._enum_slot(arg, skill)
            keywords = _phrases(list(arg.keywords))
            self.phrases["keyword"].extend(keywords)
            if kind == "number" and keywords:
                kw = self.book.add(f"k_{name}_{aname}", keywords)
                ref = f"[[the] {kw}] [to] {ref}"
            elif kind == "number" and setter:
                ref = f"[to] {ref}"
            by_kind.setdefault(kind, []).append((aname, ref))
        side = " ".join(f"[{r}]" for _a, r in by_kind.get("side", []))
        level = " ".join(f"[{r}]" for _a, r in by_kind.get("level", []))
        nouns = by_kind.get("noun", [])
        noun_phrases: list[str] = []
        for k, (aname, ref) in enumerate(nouns):
            core = " ".join(p for p in ((side if k == 0 else ""), ref, (level if k == 0 else "")) if p)
            ents = set(arg_of[aname].entities)
            to = "[to] " if "object" not in ents and not by_kind.get("of") else ""
            article = "[the]" if "place" in ents else "the"
            alts = [f"{to}{article} {core}"] + (["it"] if "object" in ents else [])
            noun_phrases.append(self.book.add(f"np_{name}_{k}", alts))
        if not nouns:
            if side or level:
                noun_phrases.append(f"[the] {side} {level}".strip())
            noun_phrases.append(f"the {self.thing}")
        ofs = [ref for _a, ref in by_kind.get("of", [])]
        arms = by_kind.get("arm", [])
        arm_tail = [f"{self.book.add('p_' + a, _arm_prepositions(a))} [the] {ref}" for a, ref in arms]
        others = [ref for _a, ref in by_kind.get("other", [])] + [ref for _a, ref in by_kind.get("text", [])]
        numbers = [ref for _a, ref in by_kind.get("number", [])]
        of_prefix = [f"[the] {self.book.add('of_' + name, [f'{r} [view] of' for r in ofs])}"] if ofs else []

        def seq(parts: list[str]) -> str:
            return " ".join(f"[{p}]" for p in parts)

        out = [seq([*of_prefix, *noun_phrases, *arm_tail, *others, *numbers])]
        if arm_tail and numbers:
            # "lift the needle ten millimetres with psm2": the arm said last, after the amount. Without this
            # frame the decoder could not hear it there and made the end of the command into a second one
            # ("... and return psm2")
            last = [seq([*of_prefix, *noun_phrases, *others, *numbers[:-1]]), numbers[-1], *arm_tail]
            out.append(" ".join(p for p in last if p))
        if arms:
            first, ref = arms[0]
            rest = [f"{self.book.add('p_' + a, _arm_prepositions(a))} [the] {r}" for a, r in arms[1:]]
            out.append(f"[the] {ref} " + seq([*noun_phrases, *rest, *others, *numbers]))
        verbless = []
        if ofs and nouns:
            verbless.append(f"{of_prefix[0]} {noun_phrases[0]}")
        return [o.strip() for o in out], verbless

    def command(self, name: str, verbs: list[str], args: list[tuple[str, ArgSpec]], skill_of: dict[str, SkillSpec]) -> str:
        self.phrases["skill"].extend(verbs)
        verb = self.book.add(f"v_{name}", verbs)
        lead = self.book.add("lead", list(_LEAD))
        after, verbless = self.frames(name, verbs, args, skill_of)
        alts = [f"[{lead}] {verb} {a}".strip() for a in after] + verbless
        return self.book.add(f"c_{name}", alts)

    def commands(self) -> list[str]:
        out: list[str] = []
        for sname, skill in self.cs.skills.items():
            verbs = _phrases([*skill.synonyms, sname.replace("_", " "), *skill.implied])
            args = list(skill.args.items())
            out.append(self.command(sname, verbs, args, {a: skill for a, _ in args}))
        for tname, task in self.cs.tasks.items():
            verbs = _phrases([*task.synonyms, tname.replace("_", " ")])
            targs: list[tuple[str, ArgSpec]] = []
            skill_of: dict[str, SkillSpec] = {}
            for step in task.steps:
                for a, spec in self.cs.skills[step].args.items():
                    if a not in skill_of:
                        targs.append((a, spec))
                        skill_of[a] = self.cs.skills[step]
            out.append(self.command(tname, verbs, targs, skill_of))
        return out

    def control(self) -> tuple[str, str]:
        """The stop phrases, and the other controls."""
        stops = _phrases(list(CONTROL_PHRASES["stop"]))
        others = [p for p in _phrases([p for k, ps in CONTROL_PHRASES.items() if k != "stop" for p in ps])
                  if p not in stops]
        self.phrases["control"].extend([*stops, *others])
        return self.book.add("stop", stops), self.book.add("control", others)

    def refused(self, verbs: list[str]) -> str:
        """Unsupported actions and targets in one frame each ("cut the vessel", "scan the brain"), so they are
        heard as what they are and not as the nearest supported word."""
        actions = [" ".join(spoken_words(w)) for w in sorted(UNSUPPORTED_ACTIONS) if _said(spoken_words(w))]
        targets: list[str] = [" ".join(spoken_words(w)) for w in (*sorted(UNSUPPORTED_TARGETS),
                                                                    *shared_vocabulary().unsupported_modes)
                              if _said(spoken_words(w))]
        for other in DOMAINS:
            if other == self.domain:
                continue
            ocs = load_command_set(other)
            for etype in ("organ", "anatomy", "object"):
                ent = ocs.entities.get(etype)
                if ent is not None:
                    for value, ev in ent.values.items():
                        targets.extend(_phrases([*ev.synonyms, value.replace("_", " ")]))
        self.phrases["refused"].extend([*actions, *targets])
        action = self.book.add("refused_action", actions)
        target = self.book.add("refused_target", targets)
        verb = self.book.add("any_verb", verbs)
        entity = self.book.add("any_entity", list(dict.fromkeys(self.noun_phrases)))
        item = self.book.add("refused_item", [target, entity])
        return self.book.add("refused", [f"{action} the {item}", f"{verb} the {target}"])

    def utterance(self) -> str:
        commands = self.commands()
        stop, control = self.control()
        refused = self.refused(list(dict.fromkeys(self.phrases["skill"])))
        command = self.book.add("command", commands)
        split = self.book.add("then", ["then", "and", "and then"])
        return (f"( /1/ {stop} | /1/ {control} | /1/ {command} | /{_SECOND}/ {command} {split} {command} "
                f"| /{_RARE}/ {refused} )")


@functools.cache
def build_grammar(domain: str) -> VoiceGrammar:
    """The grammar for ``domain``, regenerated from its skill file (cached per process).

    Fixed frames per skill, numbers only with the units their argument accepts, controls as whole phrases,
    refusals only as "<refused action> the <noun>" or "<verb> the <refused target>", and at most two commands
    joined by "then" or "and": every freedom the grammar gives, the decoder spends on short-word guesses.
    """
    cs = load_command_set(domain)
    b = _Builder(domain, cs)
    top = b.utterance()
    body = [
        "#JSGF V1.0;",
        "",
        f"// Generated from skills/{domain}.yaml by medrobot_llm.consoles.voice.grammar; do not edit.",
        f"grammar medrobot_{domain};",
        "",
        f"public <utterance> = {top};",
        "",
        *(f"<{name}> = {expansion};" for name, expansion in b.book.bodies.items()),
    ]
    jsgf = "\n".join(body) + "\n"
    words: set[str] = set()
    for expansion in (top, *b.book.bodies.values()):
        words.update(re.findall(r"(?<![<\w'])[a-z][a-z0-9']*(?![\w'>])", re.sub(r"<[^>]*>", " ", expansion)))
    dictionary: dict[str, tuple[str, ...]] = {}
    sources: dict[str, str] = {}
    for w in sorted(words):
        dictionary[w], sources[w] = pronunciations(w)
    rules = {k: tuple(dict.fromkeys(v)) for k, v in b.phrases.items()}
    return VoiceGrammar(domain=domain, jsgf=jsgf, words=frozenset(words), dictionary=dictionary, sources=sources,
                        written=_written_forms(cs), rules=rules)

"""Control intents and unreadable text: what is decided about a command before it is read as a task.

A stop, a confirmation, a question about the robot's state or a command written in look-alike letters never
becomes a plan; these functions find them in the normalised tokens.
"""

from __future__ import annotations

import functools

from medrobot_llm.core.plan import Control
from medrobot_llm.language.inflection import verb_bases
from medrobot_llm.language.lexicon import Lexicon
from medrobot_llm.language.negation import CONFIRMATIONS
from medrobot_llm.language.numbers import normalise_numerals, words_to_numbers
from medrobot_llm.language.phrases import SOFT, Match, Phrase, core_words, match_phrases
from medrobot_llm.language.text import fold_text, tokenize
from medrobot_llm.language.words import CONTROL_IDIOMS, CONTROL_OBJECTS, CONTROL_PHRASES, FILLER, UNSUPPORTED_TARGETS
from medrobot_llm.planning.rule.model import NUMBER

_CONTROL_PRIORITY = ("stop", "cancel", "deny", "confirm", "pause", "resume", "status")

_CONTROL_LEXICON = sorted((Phrase(tuple(words_to_numbers(tokenize(p))), "control", name)
                           for name, ps in CONTROL_PHRASES.items() for p in ps), key=lambda p: -len(p.words))


def unreadable(text: str) -> str | None:
    """The tokenizer drops letters it cannot fold to ASCII, so "tаke" with a Cyrillic "а" would be planned
    from the fragments around it; a look-alike spelling is refused instead, naming the letters."""
    folded = fold_text(normalise_numerals(text))
    if folded.isascii():
        return None
    odd = sorted({ch for ch in folded if ch.isalpha() and not ch.isascii()})
    if not odd:
        return None
    return (f"Refused: it contains letters the planner cannot read ({', '.join(odd[:5])}); "
            "write the command in plain English letters")


@functools.cache
def _control_lexicon() -> list[Phrase]:
    """Control phrases, those with the most meaningful words first ("one moment" before "just a moment")."""
    return sorted(_CONTROL_LEXICON, key=lambda p: (-len(core_words(p.words)), -len(p.words)))


def _skill_words(lex: Lexicon) -> frozenset[str]:
    return frozenset(w for p in lex.skills for w in p.words if not NUMBER.match(w))


def _strip_idioms(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        hit = next((idiom for idiom in CONTROL_IDIOMS if tuple(words[i:i + len(idiom)]) == idiom), None)
        if hit:
            i += len(hit)
            continue
        out.append(words[i])
        i += 1
    return out


def control_intent(tokens: list[str], lex: Lexicon, embedded_stop: bool) -> Control | None:
    """A control intent: the whole utterance, or (``embedded_stop``) a stop word anywhere in it, since a
    stop said inside a longer sentence must still stop the robot.

    A control verb followed only by filler, generic nouns ("the arms", "the plan") or the bare name of a skill
    ("confirm the exposure", "no, don't take that shot") is a control: nothing in it says what to act on."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    if not words:
        return None
    if embedded_stop:
        stop = [Phrase(tuple(tokenize(p)), "control", "stop") for p in CONTROL_PHRASES["stop"]]
        stop_words = {"stop", "halt", "estop", "emergency", "abort", "freeze"}
        if any(w in stop_words for w in words) or match_phrases(words, stop, set()):
            return Control.STOP
        return None
    if _confirmation_before_command(tokens, lex):
        return None
    stripped = _strip_idioms(words)
    if stripped != words:
        return control_intent(stripped, lex, False) or _control_of(words, lex) if stripped else _control_of(words, lex)
    return _control_of(words, lex)


def _confirmation_before_command(tokens: list[str], lex: Lexicon) -> bool:
    """"confirmed, take a shot": confirmation words, a pause, then a command. The words answer no question
    (the supervisor asks for each hazardous step on its own), so this is the command, not a confirmation."""
    cut = next((k for k, t in enumerate(tokens) if t in (",", ";", ".", ":")), None)
    if cut is None or not any(tuple(tokens[:cut]) == words for words in CONFIRMATIONS):
        return False
    tail = [t for t in tokens[cut + 1:] if t not in (",", ".", "!", "?", ";", ":", '"')]
    return bool(match_phrases(tail, lex.skills, set())) and _control_of(tail, lex) is None


#: control phrases made of a general verb and a pronoun: only the whole phrase is a control, since the verb
#: alone starts a request ("do a cone-beam spin" asks for an exposure; it must never read as "do it" = confirm)
_LITERAL_CONTROLS = frozenset({("do", "it"), ("go", "ahead"), ("go", "on"), ("carry", "on"), ("back", "to", "it")})


def _literal(m: Match, words: list[str]) -> bool:
    if m.phrase.words not in _LITERAL_CONTROLS:
        return True
    start = min(m.positions)
    return tuple(words[start:start + len(m.phrase.words)]) == m.phrase.words


def _control_of(words: list[str], lex: Lexicon) -> Control | None:
    found = [m for m in match_phrases(words, _control_lexicon(), set()) if _literal(m, words)]
    if not found:
        return None
    # a control word that is part of a longer skill phrase is the skill ("go home", "freeze and save")
    skill_matches = match_phrases(words, lex.skills, set())
    found = [m for m in found if not any(s.size > m.size and set(s.positions) & set(m.positions)
                                         for s in skill_matches)]
    if not found:
        return None
    covered = {i for m in found for i in m.positions}
    rest = [w for i, w in enumerate(words) if i not in covered]
    if any(NUMBER.match(w) for w in rest):
        return None
    if rest and (match_phrases(rest, lex.entities, set()) or any(w in UNSUPPORTED_TARGETS for w in rest)):
        return None
    skill_words = _skill_words(lex)
    at_head = min(covered) == 0
    for w in rest:
        if w in FILLER or w in CONTROL_OBJECTS or w in SOFT:
            continue
        if at_head and any(x in skill_words for x in verb_bases(w)):
            continue
        return None
    names = {m.phrase.name for m in found}
    for name in _CONTROL_PRIORITY:
        if name in names:
            return Control(name)
    return None


@functools.cache
def _negated_pauses() -> tuple[Phrase, ...]:
    """Pause phrases that open with a negation ("don't move", "do not move")."""
    return tuple(p for p in _CONTROL_LEXICON if p.name == "pause"
                 and (p.words[:1] in (("don't",), ("dont",), ("never",)) or p.words[:2] == ("do", "not")))


def negated_intent(tokens: list[str]) -> Control | None:
    """A command that starts by negating or cancelling ("don't move the right arm", "cancel the liver scan")
    is never a plan, whatever it names."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    while words and words[0] in ("no", "nope", "please", "oh", "wait"):
        words = words[1:]
    if words[:1] in (["don't"], ["dont"], ["never"]) or words[:2] == ["do", "not"]:
        if words[:2] == ["never", "mind"]:
            return Control.CANCEL
        # "don't move psm1" and "don't move the arms" are one intent, whatever is named: hold still now.
        # Negating a motion as such is a pause (the supervisor can resume); negating one named task ("don't
        # take the shot", "don't grab the needle") rejects what was proposed, a deny. The planner has no
        # pending question to consult, so the verb decides, not the object.
        if any(tuple(words[:len(p.words)]) == p.words for p in _negated_pauses()):
            return Control.PAUSE
        return Control.DENY
    if words[:1] in (["cancel"], ["scrap"], ["abandon"], ["discard"]) or words[:2] == ["call", "off"]:
        return Control.CANCEL
    return None


#: words that open a yes/no question about the robot's state ("is the probe in contact?"), and the subjects
#: after which "do" / "have" ask rather than command ("do a fan" and "have psm1 grab it" are commands)
_QUESTION_OPENERS = frozenset(["is", "are", "am", "was", "were", "does", "did", "has", "isn't", "aren't", "doesn't",
                               "hasn't"])

_ASKED_SUBJECTS = frozenset(["you", "we", "i", "it", "they"])


def asked_intent(tokens: list[str]) -> Control | None:
    """"is the probe in contact?", "have you taken the shot?": a question about the robot's state is a status
    request. Read as a command, its nouns named a task: "in contact" became a contact step."""
    words = [t for t in tokens if t not in (",", ".", "!", "?", ";", ":", '"')]
    if not words:
        return None
    if words[0] in _QUESTION_OPENERS or (words[0] in ("do", "have", "had") and words[1:2]
                                         and words[1] in _ASKED_SUBJECTS):
        return Control.STATUS
    return None


#: words that open a question asking for something to be told, not done ("where is the probe?")
_WH_WORDS = frozenset(["where", "where's", "wheres", "what", "what's", "whats", "which", "why", "how", "how's",
                       "who", "who's", "when"])

#: a request to be told, before the question it asks ("can you tell me where the shunt is?")
_TELL_ME = (("can", "you", "tell", "me"), ("could", "you", "tell", "me"), ("would", "you", "tell", "me"),
            ("do", "you", "know"), ("tell", "me"))


def wh_question(tokens: list[str]) -> list[str] | None:
    """"where is psm1?", "what is the position of the probe?", "can you tell me where the shunt is?": a
    question asks to be told something. Read as a command, its nouns named a motion ("where is the left
    kidney" moved the probe there). "how about a shot" and "what about the liver" suggest, they do not ask.
    The question's words without the request to be told ("can you tell me"), or None if it is no question."""
    body = next((tokens[len(lead):] for lead in _TELL_ME if tuple(tokens[:len(lead)]) == lead), tokens)
    words = [t for t in body if t not in (",", ".", "!", "?", ";", ":", '"')]
    if not words or words[0] not in _WH_WORDS or words[1:2] == ["about"]:
        return None
    return body


def names_robot(lex: Lexicon, tokens: list[str]) -> str | None:
    """The words of ``tokens`` that name the robot or a part of it (the skill file's ``vocabulary.robot``)."""
    singular = [t[:-1] if t.endswith("s") else t for t in tokens]
    for phrase in sorted(lex.cs.vocabulary.robot, key=lambda p: -len(p)):
        words = tokenize(phrase)
        for said in (tokens, singular):
            if any(said[i:i + len(words)] == words for i in range(len(said) - len(words) + 1)):
                return phrase
    return None


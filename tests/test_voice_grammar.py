"""The speech grammar is regenerated from skills/ and covers every word a command can need."""

from __future__ import annotations

import re

import pytest

from medrobot_llm.core.command_set import DOMAINS, load_command_set
from medrobot_llm.consoles.voice.console import confirmation_phrases, is_confirmation_for
from medrobot_llm.consoles.voice.grammar import build_grammar, domain_words, spoken_words

pytestmark = pytest.mark.voice


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_skill_phrase_and_entity_word_is_in_the_grammar(domain: str) -> None:
    g = build_grammar(domain)
    cs = load_command_set(domain)
    phrases = set(re.findall(r"[a-z0-9' ]+", g.jsgf.split("public <utterance> =", 1)[1]))
    phrases = {p.strip() for p in phrases}
    for skill in cs.skills.values():
        for syn in (*skill.synonyms, skill.name.replace("_", " ")):
            said = " ".join(spoken_words(syn))
            assert said in phrases, f"skill phrase {syn!r} ({skill.name}) is missing from the {domain} grammar"
    for etype, ent in cs.entities.items():
        for value, ev in ent.values.items():
            for syn in (value.replace("_", " "), *ev.synonyms):
                for w in spoken_words(syn):
                    assert w in g.words, f"{etype} word {w!r} ({value}) is missing from the {domain} grammar"
    for kind, words in domain_words(domain).items():
        missing = sorted(words - g.words)
        assert not missing, f"{kind} words missing from the {domain} grammar: {missing}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_grammar_word_has_a_pronunciation_and_skill_words_are_not_spelled(domain: str) -> None:
    g = build_grammar(domain)
    assert set(g.dictionary) == set(g.words)
    spelled = sorted(w for w in domain_words(domain)["skill"] if g.sources.get(w) == "spelled")
    assert not spelled, f"skill words with only a letter-by-letter pronunciation: {spelled}"


def test_organs_anatomy_and_views_are_words_of_their_grammar() -> None:
    for domain, etypes in (("ultrasound", ("organ",)), ("xray", ("anatomy", "view"))):
        g = build_grammar(domain)
        for etype in etypes:
            for value in load_command_set(domain).entities[etype].values:
                assert set(spoken_words(value.replace("_", " "))) <= g.words, (domain, etype, value)


def test_the_grammar_follows_the_skill_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """A skill added to the command set appears in the grammar without touching the grammar code."""
    import medrobot_llm.consoles.voice.grammar as vg

    real = load_command_set
    cs = real("xray")
    extra = cs.skills["park"].model_copy(update={"name": "stow", "synonyms": ("stow the tube", "stowaway")})
    patched = cs.model_copy(update={"skills": {**cs.skills, "stow": extra}})
    monkeypatch.setattr(vg, "load_command_set", lambda d: patched if d == "xray" else real(d))
    vg.build_grammar.cache_clear()
    try:
        g = vg.build_grammar("xray")
        assert "stow the tube" in g.jsgf and "stowaway" in g.words
    finally:
        vg.build_grammar.cache_clear()


def test_radiation_confirmation_phrases_come_from_the_skills_and_do_not_overlap() -> None:
    shot, spin = confirmation_phrases("xray", "take_shot"), confirmation_phrases("xray", "acquire_3d")
    assert "confirm shot" in shot and "confirm exposure" in shot and "confirm spin" in spin
    assert not set(shot) & set(spin)
    assert is_confirmation_for("confirm the exposure", "xray", "take_shot")
    for text in ("yes", "confirm", "go ahead", "confirm spin", "do not confirm the shot", "no confirm shot"):
        assert not is_confirmation_for(text, "xray", "take_shot"), text


def test_british_variants_follow_the_rules_and_are_in_the_dictionary() -> None:
    from medrobot_llm.consoles.voice.phones import british

    assert british("L IH V ER") == "L IH V AH"  # no /r/ after a vowel
    assert british("L AE T ER AH L") == "L AA T AH R AH L"  # but before one; TRAP opens
    assert british("HH OW M") == "HH AH UW M"  # GOAT starts central
    assert british("S T AA P", "stop") == "S T AO P"  # LOT is rounded where the spelling has o
    assert british("P AA R K", "park") == "P AA K"
    assert british("SH AH N T", "shunt") == "SH AA N T"  # STRUT opens in a content word of one syllable
    assert british("M AH S AH L", "muscle") == "M AH S AH L"  # but an AH may be a schwa in longer words
    assert british("F R AH M", "from") == "F R AH M"  # and in unstressed function words
    g = build_grammar("ultrasound")
    assert "L IH V AH" in g.dictionary["liver"] and "L IH V ER" in g.dictionary["liver"]


def test_a_unit_too_large_for_the_range_is_kept_but_rare() -> None:
    g = build_grammar("xray")
    rare = [line for line in g.jsgf.splitlines() if "metres" in line and "millimetres" not in line]
    assert rare, "metres must stay hearable, so that 'two metres' is refused"
    assert re.search(r"/1e-\d+/ <u_[a-z_]*rare>", g.jsgf)

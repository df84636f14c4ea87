"""Stage 1 of the rule planner: normalised tokens to clauses, each with its skill phrases, names and quantities.

A command is split where a new action starts ("and then", a comma before a skill phrase, "and 2 shots"),
and every clause is read once, here, into a ``Clause`` that the later stages only consult and mark.
"""

from __future__ import annotations

import functools
import re

from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.units import UNIT_WORDS
from medrobot_llm.language.lexicon import lexicon, shared_vocabulary
from medrobot_llm.language.numbers import FRACTIONS, NEGATIVE_SIGNS, vague_amount, words_to_numbers
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.phrases import SOFT, Match, Phrase, core_words, find_phrase, match_phrases, present_words
from medrobot_llm.language.words import (
    ADDED_WORDS,
    CHANGE_AFTER,
    CHANGE_VERBS,
    FILLER,
    FUNCTION_WORDS,
    LABEL_WORDS,
    NEW_VALUE_WORDS,
    NOUN_ONLY_DETERMINERS,
    OTHER_MODALITIES,
    ROOM_OBJECTS,
    SETTING_DIMENSIONS,
    SMALL_AMOUNT,
    UNSUPPORTED_ACTIONS,
    UNSUPPORTED_TARGETS,
)
from medrobot_llm.planning.rule.model import (
    ANSWER_WORDS,
    COUNT_ADJECTIVES,
    NUMBER,
    VERB_PARTICLES,
    Clause,
    Item,
    Qty,
    Question,
    Refusal,
    Stage,
    agent_kinds,
    agent_words,
    count_nouns,
    known,
    known_as_is,
    unit_at,
)
from medrobot_llm.planning.rule.quantifiers import elided_nouns, expand_quantifiers
from medrobot_llm.planning.rule.returns import RETURN_CLAUSES

#: words that put one step after another ("then"); "and" and a comma may only list
SEQUENCE_WORDS = (("and", "then"), ("after", "that"), ("then",), ("afterwards",), ("followed", "by"), ("next",),
                ("and", "after", "that"), ("once", "done"), ("when", "done"))

#: a label word and the words after it as written, up to a clause's end: punctuation or a sequencing word
_LABEL_AS_WRITTEN = (r"\b(?:" + "|".join(sorted(LABEL_WORDS)) + r")\b\s*[:\"]?\s*([^,;\"]+?)\s*\"?\s*(?:[,;.]|"
                     + "|".join(r"\s(?:and\s)?" + r"\s".join(w) + r"\b" for w in SEQUENCE_WORDS) + "|$)")

#: phrases that start with a sequencing word and say a place, not an order ("next to the needle")
PLACE_PHRASES = (("next", "to"),)

_TIMES = {"once": 1, "twice": 2, "thrice": 3}

#: words that only link a name to the sentence: "to the right" also holds the side "right"
_LINK_WORDS = frozenset(["to", "toward", "towards", "the", "into", "onto", "of"])


_PRONOUNS = frozenset(["it", "them", "him", "her", "this", "that", "everything", "both", "back"])


def _phrasal_matches(tokens: list[str], phrases: list[Phrase], found: list[Match],
                     agents: frozenset[str]) -> list[Match]:
    """Phrasal verbs split by their object ("place the shunt in the vessel", "put the probe back on"), read
    alongside the bare verb they start with: the greedy pass gave the verb ("place" = move) the word first,
    and the longer phrase would otherwise never be weighed against it. Not when the words between name the
    robot itself (``agents``): "place the left arm in the vessel" moves the arm."""
    single = {m.start: m for m in found if m.size == 1}
    taken = {i for m in found for i in m.positions}
    present = present_words(tokens)
    out: list[Match] = []
    for p in phrases:
        core = core_words(p.words)
        if not all(w in present for w in core):
            continue
        for pos in find_phrase(tokens, p.words, set(), allow_gaps=True):
            verb = single.get(pos[0])
            if verb is None or verb.phrase.kind == p.kind and verb.phrase.name == p.name \
                    or any(q in taken for q in pos[1:]) or pos[-1] - pos[0] < len(pos) \
                    or any(a in tokens[pos[0]:pos[-1]] for a in agents):
                continue
            out.append(Match(p, pos))
    return out


@functools.cache
def _phrasal_phrases(domain: str) -> list[Phrase]:
    """The domain's skill phrases that end in a particle ("put in", "slide into")."""
    return [p for p in lexicon(domain).skills
            if len(core_words(p.words)) >= 2 and core_words(p.words)[-1] in VERB_PARTICLES]


class ClauseReader(Stage):
    """Tokens to clauses: split at sequencing words, and find in each clause its skill phrases, the names
    it says and its quantities."""

    def read(self, tokens: list[str]) -> list[Clause]:
        parts = self.split(elided_nouns(self._repeated_verbs(expand_quantifiers(self.lex, tokens))))
        parts = _returns_joined([piece for part in parts for piece in _distributed_apart(part)])
        while parts and all(t in ANSWER_WORDS for t in parts[0]) and len(parts) > 1:
            parts = parts[1:]
        clauses = self._merge_vocatives([self.analyse(c) for c in parts])
        return [c for c in clauses if c.tokens]

    def _repeated_verbs(self, tokens: list[str]) -> list[str]:
        """"rescan the spleen", "re-insert the shunt": the verb done again is the verb. Only for words the
        lexicon does not know as they are ("release" and "return" stay themselves)."""
        out: list[str] = []
        for k, t in enumerate(tokens):
            if t == "re" and k + 1 < len(tokens) and known_as_is(self.lex, tokens[k + 1]):
                continue
            if t.startswith("re") and len(t) > 4 and not known_as_is(self.lex, t) and known_as_is(self.lex, t[2:]):
                t = t[2:]
            out.append(t)
        return out

    def _merge_vocatives(self, clauses: list[Clause]) -> list[Clause]:
        """"psm2, release the needle" / "release the needle, psm2": the arm addressed belongs to the clause
        next to it, it is not a clause of its own."""
        agents = agent_kinds(self.cs)
        out: list[Clause] = []
        pending: list[str] = []
        for k, c in enumerate(clauses):
            rest = [t for i, t in enumerate(c.tokens) if i not in c.covered]
            vocative = (agents and not c.skills and not c.qtys and c.items and len(clauses) > 1
                        and all(e in agents for it in c.items for e, _ in it.options)
                        and all(t in FILLER or t in SOFT or t in ANSWER_WORDS or t == ":" or
                                (t in FUNCTION_WORDS and not c.skills and k + 1 < len(clauses)) for t in rest))
            if vocative and k + 1 < len(clauses):
                pending += c.tokens + [","]
                continue
            if vocative and out:
                out[-1] = self.analyse(out[-1].tokens + [","] + c.tokens)
                continue
            out.append(self.analyse(pending + c.tokens) if pending else c)
            pending = []
        return out

    def split(self, tokens: list[str]) -> list[list[str]]:
        starts = self._skill_starts(tokens)
        parts: list[list[str]] = []
        cur: list[str] = []
        i = 0
        n = len(tokens)
        while i < n:
            t = tokens[i]
            if t in (";", ".", "!", "?"):
                parts.append(cur)
                cur = []
                i += 1
                continue
            hit = next((w for w in SEQUENCE_WORDS if tuple(tokens[i:i + len(w)]) == w), None)
            if any(tuple(tokens[i:i + len(p)]) == p for p in PLACE_PHRASES):
                hit = None
            if hit and cur and cur[-1] not in NOUN_ONLY_DETERMINERS:
                parts.append(cur)
                cur = []
                i += len(hit)
                continue
            if hit and not cur:
                # "next, park", "then then scan the liver": an order word with nothing before it orders nothing
                i += len(hit)
                continue
            if t in (",", "and") and cur and i + 1 < n:
                j = i + 1
                while j < n and tokens[j] in (",", "and", "then", "please", "also", "now"):
                    j += 1
                # "... and 2 shots", "... and take 1 more shot": a counted exposure (its verb before it) is a step
                counted = _counted_at(tokens, j) or (j < n and tokens[j].isalpha() and _counted_at(tokens, j + 1))
                # "... and another shot" counts one more, as "... and 2 shots" counts two
                counted = counted or (j < n and tokens[j] == "another" and any(
                    tokens[k] in count_nouns() for k in range(j + 1, min(j + 3, n))))
                counted = counted or self._named_then_skill(tokens, j, starts)
                if j in starts or counted or self._verb_before(tokens, j, starts):
                    parts.append(cur)
                    cur = []
                    i = j
                    continue
            if t in (",", "and") and not cur:
                i += 1
                continue
            cur.append(t)
            i += 1
        parts.append(cur)
        return [p for p in parts if p]

    def _named_then_skill(self, tokens: list[str], j: int, starts: set[int]) -> bool:
        """"... and a lateral shot", "... and psm1 grab it", ", lateral with a shot": names, then a skill
        phrase (after "with", which only ties the two), start a clause. Not when "each" follows a phrase tied
        by "with" ("AP and lateral of the left and right hip with a shot each"): the step is distributed over
        everything named before, which stays one list (``_distributed_apart`` splits the step off)."""
        entity_words = {w for p in self.lex.entities for w in p.words}
        named = False
        for k in range(j, min(j + 5, len(tokens))):
            if k in starts:
                end = next((e for e in range(k, len(tokens)) if tokens[e] in (",", ";", "and", "then")), len(tokens))
                return named and not ("with" in tokens[j:k] and any(t in _DISTRIBUTIVE for t in tokens[k:end]))
            if tokens[k] in entity_words:
                named = True
            elif tokens[k] not in SOFT and not (named and tokens[k] == "with"):
                return False
        return False

    def _verb_before(self, tokens: list[str], j: int, starts: set[int]) -> bool:
        """"... and send it home": a word the lexicon does not know (a verb such as "send"), then at most a
        pronoun, then a skill phrase, starts a new clause."""
        if j >= len(tokens) or not tokens[j].isalpha() or tokens[j] in self.lex.known_words or tokens[j] in SOFT:
            return False
        entity_words = {w for p in self.lex.entities for w in p.words}
        for k in range(j + 1, min(j + 5, len(tokens))):
            if k in starts:
                return True
            if tokens[k] not in _PRONOUNS and tokens[k] not in SOFT and tokens[k] not in entity_words \
                    and tokens[k] not in ("arm", "arms", "robot", "probe", "gantry", "instrument"):
                return False
        return False

    def _skill_starts(self, tokens: list[str]) -> set[int]:
        starts = set()
        present = present_words(tokens)
        for p in self.lex.skills:
            if not all(w in present for w in core_words(p.words)):
                continue
            for pos in find_phrase(tokens, p.words, set(), allow_gaps=False):
                starts.add(pos[0])
        return starts

    def analyse(self, tokens: list[str]) -> Clause:
        clause = Clause(tokens=list(tokens))
        toks = clause.tokens
        for k, t in enumerate(toks):
            saves_as = t == "as" and any(w in ("save", "store", "capture", "record", "keep", "file") for w in toks[:k])
            if t in LABEL_WORDS or saves_as:
                j = k + 1
                while j < len(toks) and toks[j] in ("it", "as", "with", "the", "label", ":", '"', "of"):
                    j += 1
                label = " ".join(w for w in toks[j:] if w not in ('"', ","))
                if label:
                    clause.label = self._original_case(label)
                clause.tokens = toks = toks[:k]
                break
        # "press a touch harder": the words of "a touch", "a bit" say how much, never which skill
        small = frozenset(k for i in range(len(toks)) for sm in SMALL_AMOUNT if len(sm) > 1
                          and tuple(toks[i:i + len(sm)]) == sm for k in range(i, i + len(sm)))
        skills = match_phrases(toks, self.lex.skills, set(), small)
        if not VERB_PARTICLES.isdisjoint(toks):
            skills += _phrasal_matches(toks, _phrasal_phrases(self.cs.domain), skills, agent_words(self.cs.domain))
        ents = [m for etype in self.cs.entities
                for m in match_phrases(toks, [p for p in self.lex.entities if p.name == etype], set())]
        by_span: dict[tuple[int, ...], Item] = {}
        for m in ents:
            item = by_span.get(m.positions)
            if item is None:
                item = by_span[m.positions] = Item(m.start, m.positions[-1], [])
            item.options.append((m.phrase.name, m.phrase.value))
        for m in ents:
            for p in self.lex.entities:
                if p.words == m.phrase.words and (p.name, p.value) not in by_span[m.positions].options:
                    by_span[m.positions].options.append((p.name, p.value))
        clause.items = sorted(by_span.values(), key=lambda it: (it.start, -(it.end - it.start)))
        for it in clause.items:
            it.positions = set(next(m.positions for m in ents if m.start == it.start and m.positions[-1] == it.end))
        clause.items = [it for it in clause.items
                        if not any(o is not it and it.positions < o.positions
                                   and not all(toks[k] in _LINK_WORDS for k in o.positions - it.positions)
                                   for o in clause.items)]
        skills = self._amounts_not_verbs(skills)
        clause.skills = skills
        clause.skill_positions = {i for m in skills for i in m.positions}
        clause.covered = {i for m in (*skills, *ents) for i in m.positions}
        vague = vague_amount(toks)
        if vague is not None:
            raise Refusal(f"'{vague}' is not an amount the planner can convert exactly; say a number with its unit",
                          code=Reason.VAGUE_VALUE)
        self._quantities(clause)
        self._landmarks(clause)
        self._purpose(clause)
        clause.each = self._distributive(clause)
        return clause

    def _purpose(self, clause: Clause) -> None:
        """"scan the left kidney for stones", "AP of the pelvis to rule out a fracture": what the step is for,
        said after it, is known detail. Only a purpose that names nothing: no skill, name or quantity of the
        command set after its first word, and no word any command set refuses ("... to look at the heart")."""
        toks = clause.tokens
        refused = _refused_words(self.cs.domain)
        for k in range(1, len(toks)):
            lead = next((w for w in _PURPOSE_LEADS if tuple(toks[k:k + len(w)]) == w), None)
            if lead is None:
                continue
            rest = range(k, len(toks))
            # the opening words may be a skill phrase ("get" grasps in surgery); what follows them may not
            named = {i for it in clause.items for i in it.positions} | {i for q in clause.qtys
                                                                         for i in range(q.start, q.end + 1)}
            if any(i in clause.covered for i in rest[len(lead):]) or any(i in named for i in rest) \
                    or any(toks[i] in refused for i in rest):
                return
            clause.skills = [m for m in clause.skills if not set(m.positions) & set(rest)]
            clause.skill_positions = {i for m in clause.skills for i in m.positions}
            clause.detail.update(rest)
            clause.covered.update(rest)
            return

    def _distributive(self, clause: Clause) -> int | None:
        """The position of "each" in "one shot each", "a shot of each", "two images for every view", "a shot
        per view": the clause's steps are done once per thing named before, not once. "each knee", "every
        arm" quantify a name instead (a side, an arm), and are left to the names."""
        toks = clause.tokens
        for k, t in enumerate(toks):
            if t in _DISTRIBUTIVE and (toks[k + 1:k + 2] in _PER_WHAT or (t != "per" and k + 1 == len(toks))):
                clause.covered.update(range(k, k + 2) if toks[k + 1:k + 2] in _PER_NOUNS else (k,))
                return k
        return None

    def _landmarks(self, clause: Clause) -> None:
        """"scan the left kidney starting below the ribs": a body landmark after a word of place says where the
        step starts; it is detail of the step the clause names, not a second target (and was refused as an
        organ the command set lacks). Only beside a name of what the step acts on: a landmark alone is no
        target either, and stays refused."""
        toks = clause.tokens
        # beside no target, only "starting at ..." says a landmark is where to start ("sweep 4 cm cranially
        # starting at the costal margin"); "go to the ribs" stays a target nobody has
        targeted = any(e in _TARGET_KINDS for it in clause.items for e, _ in it.options)
        for words in _landmark_words(self.cs.domain):
            for start in range(len(toks) - len(words) + 1):
                span = set(range(start, start + len(words)))
                if tuple(toks[start:start + len(words)]) != words or span & clause.covered:
                    continue
                k = start - 1
                while k >= 0 and toks[k] in _LANDMARK_ARTICLES:
                    k -= 1
                if k < 0 or toks[k] not in _PLACE_WORDS:
                    continue
                while k > 0 and toks[k - 1] in _PLACE_WORDS | _STARTING:
                    k -= 1
                if not targeted and toks[k] not in _STARTING - {"right", "and"}:
                    continue
                clause.detail.update(range(k, start + len(words)))
                clause.covered.update(range(k, start + len(words)))

    def _amounts_not_verbs(self, skills: list[Match]) -> list[Match]:
        """"fan a quarter turn": a phrase that only says an amount ("quarter turn" = rotate 90 degrees) names
        no skill when another skill phrase in the clause is the verb; it is read as the quantity it is, and
        the verb's skill gets it (or refuses it as out of its range), never the other skill."""
        def amount_only(m: Match) -> bool:
            spec = self.cs.skills.get(m.phrase.name) if m.phrase.kind == "skill" else None
            if spec is None:
                return False
            implied = next((args for text, args in spec.implied.items()
                            if tuple(words_to_numbers(tokenize(text))) == m.phrase.words), None)
            if not implied:
                return False
            return all(spec.args[a].type == "number" for a in implied) and any(u in m.phrase.words for u in UNIT_WORDS)
        amounts = [m for m in skills if amount_only(m)]
        verbs = [m for m in skills if not amount_only(m) and m.phrase.name not in {a.phrase.name for a in amounts}]
        return [m for m in skills if m not in amounts] if amounts and verbs else skills

    def _original_case(self, label: str) -> str:
        """Labels are the person's text ("LK upper pole", "RK1", "AH0"): the words after a label word as written,
        whose tokens hold the label's, rather than the tokens (split at digits, fillers dropped, "x" read as
        "times", slips mended)."""
        written = [m.group(1) for m in re.finditer(_LABEL_AS_WRITTEN, self.state.original, flags=re.IGNORECASE)]
        for said in written:
            if set(label.split()) <= set(tokenize(said)) | {"times"}:
                return said
        if len(written) == 1:
            # the only label said, its words changed on the way ("ACN0" read as "can 0")
            return written[0]
        pattern = r"\W*".join(re.escape(w) for w in label.split())
        found = re.search(pattern, self.state.original, flags=re.IGNORECASE)
        return found.group(0) if found else label

    def _quantities(self, clause: Clause) -> None:
        toks = clause.tokens
        n = len(toks)
        i = 0
        while i < n:
            small = next((s for s in SMALL_AMOUNT if tuple(toks[i:i + len(s)]) == s), None)
            if small:
                clause.small = True
                i += len(small)
                continue
            t = toks[i]
            if t in _TIMES:
                clause.count = _TIMES[t]
                i += 1
                continue
            if i in clause.covered and not (NUMBER.match(t) and toks[i - 1:i] not in (["psm"], ["l"])):
                i += 1
                continue
            negative = False
            j = i
            if t in NEGATIVE_SIGNS:
                # "plus or minus 10 degrees" is a symmetric amount, not a negative one
                negative = toks[max(0, i - 2):i] != ["plus", "or"]
                if not negative:
                    clause.covered.update(range(i - 2, i))
                j += 1
            value: float | None = None
            if j < n and NUMBER.match(toks[j]) and j not in clause.covered:
                value = float(toks[j])
                j += 1
                # "three quarters of a centimetre"
                if j < n and toks[j] in FRACTIONS:
                    value *= FRACTIONS[toks[j]]
                    j = _past_article(toks, j + 1)
            elif j < n and toks[j] in FRACTIONS:
                value = FRACTIONS[toks[j]]
                j = _past_article(toks, j + 1)
            elif j < n and toks[j] in ("a", "an", "one") and j + 1 < n and toks[j + 1] in UNIT_WORDS \
                    and toks[j + 1] not in ("in", "m", "n", "%"):
                value = 1.0
                j += 1
            if value is None:
                i += 1
                continue
            unit_len, unit = unit_at(self.lex, toks, j)
            if unit is None and j < n and toks[j] in ADDED_WORDS:
                if toks[j + 1:j + 2] in (["time"], ["times"]) and not negative:
                    # "sweep caudal one more time": the step once more, not a 1 mm sweep
                    clause.count = int(value)
                    clause.covered.update(range(i, j + 2))
                    i = j + 2
                    continue
                added_len, added = unit_at(self.lex, toks, j + 1)
                if added is not None and (clause.skills or clause.items):
                    raise Question(f"'{' '.join(toks[i:j + 1 + added_len])}': more than what? The planner does not "
                                   "know the present value; say the value itself")
                if added is not None:
                    # "then 10 more degrees": more of the step before, in these units
                    unit, unit_len = added, added_len + 1
            end = j + unit_len
            if (toks[end:end + 1] == ["to"] and end + 1 < n and NUMBER.match(toks[end + 1])) or (
                    toks[i - 1:i] == ["between"] and toks[end:end + 1] == ["and"]):
                # "sweep caudal 30 to 15": the end of a range became the speed
                raise Question(f"'{' '.join(toks[i - (toks[i - 1:i] == ['between']):end + 2])}': which value? A step "
                               "takes one; say it alone")
            dim_said = UNIT_WORDS[unit][0] if unit is not None else None
            by = i > 0 and toks[i - 1] == "by"
            after = toks[j + unit_len] if j + unit_len < n else None
            changed = any(t in CHANGE_VERBS for t in toks[:i]) and not (i > 0 and toks[i - 1] in NEW_VALUE_WORDS)
            if after in ("less", "fewer") or (after == "more" and unit is not None and (clause.skills or clause.items)):
                # "lift psm1 10 mm less", "rotate 5 degrees more": than what was done before, which the planner does
                # not know (as "5 more degrees"); an amount alone ("then 5 degrees more") is more of the step before
                raise Question(f"'{' '.join(toks[i:j + unit_len + 1])}' than what? The planner does not know the "
                               "value before; say the value itself")
            if dim_said in SETTING_DIMENSIONS and (by or changed or after in CHANGE_AFTER):
                said = toks[i - by:j + unit_len + (0 if by else 1)]
                what = "setting" if dim_said == "percent" else dim_said
                raise Question(f"'{' '.join(said)}' changes the present {what} by an amount, and the planner does not "
                               f"know the present one; say the {what} itself")
            # "10 by 15 cm": the second number's unit applies to the first too
            if unit is None and j + 1 < n and toks[j] in ("by", "x") and NUMBER.match(toks[j + 1]):
                _, u2 = unit_at(self.lex, toks, j + 2)
                if u2 is not None:
                    unit = u2
            noun = next((k for k in range(j, min(j + 3, n)) if toks[k] in count_nouns()
                         and all(x in clause.covered or toks[x] in COUNT_ADJECTIVES for x in range(j, k))), None)
            if noun is not None and unit is None and not negative:
                clause.count = int(value)
                clause.count_noun = toks[noun]
                clause.covered.update(range(i, j))
                clause.covered.add(noun)
                i = j
                continue
            if j < n and toks[j] == "times" and not negative:
                clause.count = int(value)
                clause.covered.update(range(i, j + 1))
                i = j + 1
                continue
            if unit is None and j < n and toks[j][0].isalpha() and len(toks[j]) > 1 and not known(self.lex, toks[j]) \
                    and toks[j] not in shared_vocabulary().unsupported_settings:
                # "3 kilograms", "7 psi", "2 o'clock": a unit the planner cannot convert is never dropped, or
                # the bare number would land in the argument's own unit (3 N for 3 kg)
                raise Refusal(f"'{' '.join(toks[i:j + 1])}': the planner does not know the unit '{toks[j]}'; "
                              "say the value in mm, cm, degrees, turns, newtons, mm/s or percent",
                              code=Reason.UNKNOWN_UNIT)
            dim = None
            factor = 1.0
            if unit is not None:
                dim, factor = UNIT_WORDS[unit]
            q = Qty(i, j + unit_len - 1, value * factor, dim, negative,
                    text=" ".join(toks[i:j + unit_len]))
            clause.qtys.append(q)
            clause.covered.update(range(i, j + unit_len))
            i = j + unit_len


#: words that distribute a clause's steps over the things named before it ("one shot each")
_DISTRIBUTIVE = frozenset(["each", "every", "apiece", "per"])

#: what the distributing word may stand before ("a shot per view", "one of each", "each with a shot"); any
#: other word is what it quantifies ("each arm", "per second")
_PER_WHAT = (["view"], ["views"], ["position"], ["positions"], ["one"], ["projection"], ["projections"], ["of"],
             ["with"], [","], ["and"], ["then"])

#: the nouns after "per" / "each" that name what is distributed over, used by the distribution
_PER_NOUNS = tuple(w for w in _PER_WHAT if w[0].isalpha() and w not in (["of"], ["with"], ["and"], ["then"]))

#: words that open what a step is for ("for stones", "to get a better view")
_PURPOSE_LEADS: tuple[tuple[str, ...], ...] = (
    ("in", "order", "to"), ("so", "that"), ("so", "we", "can"), ("so", "i", "can"), ("to", "get"), ("to", "see"),
    ("to", "look"), ("to", "check"), ("to", "assess"), ("to", "evaluate"), ("to", "visualise"), ("to", "visualize"),
    ("to", "rule", "out"), ("to", "exclude"), ("to", "find"), ("to", "show"), ("looking", "for"),
    ("checking", "for"), ("for",))


@functools.cache
def _refused_words(domain: str) -> frozenset[str]:
    """Words some command set refuses by name: a purpose holding one is no detail, it is refused."""
    vocab = shared_vocabulary()
    phrases = (*vocab.unsupported_views, *vocab.unsupported_modes, *OTHER_MODALITIES, *lexicon(domain).foreign_entities)
    named = {w for p in phrases for w in tokenize(p)} - FUNCTION_WORDS - FILLER
    return frozenset(UNSUPPORTED_ACTIONS | UNSUPPORTED_TARGETS | ROOM_OBJECTS | vocab.unsupported_settings | named)


#: entity kinds a step acts on: a landmark is detail only beside one of them
_TARGET_KINDS = frozenset(["organ", "anatomy", "object"])

#: words of place before a landmark ("below the ribs", "from the navel", "at the costal margin")
_PLACE_WORDS = frozenset(["below", "under", "beneath", "underneath", "above", "over", "at", "near", "beside", "along",
                          "from", "to", "by", "between", "past", "just", "level", "with"])

#: what may stand between the word of place and the landmark ("below the patient's lower ribs")
_LANDMARK_ARTICLES = frozenset(["the", "a", "his", "her", "their", "patient's", "your", "of"])

#: words that open the detail ("starting below", "beginning at")
_STARTING = frozenset(["starting", "start", "beginning", "begin", "right", "and"])


@functools.cache
def _landmark_words(domain: str) -> tuple[tuple[str, ...], ...]:
    """The domain's landmarks (``vocabulary.landmarks`` of its skill file), longest first."""
    found = dict.fromkeys(tuple(words_to_numbers(tokenize(w))) for w in lexicon(domain).cs.vocabulary.landmarks)
    return tuple(sorted(found, key=lambda w: -len(w)))


def _distributed_apart(part: list[str]) -> list[list[str]]:
    """"AP and lateral of the knee with one shot each", "AP and lateral of the knee, each with a shot": the
    counted step that "each" distributes is a clause of its own, after the things it is distributed over,
    as it is when said after a comma ("..., one shot each"). Left whole, the shot took one view as its
    precondition and the other was left over."""
    for e, t in enumerate(part):
        if t not in _DISTRIBUTIVE:
            continue
        near = range(max(0, e - 4), min(len(part), e + 5))
        if not any(part[k] in count_nouns() for k in near):
            return [part]
        if e > 1 and part[e - 1] == ",":
            return [part[:e - 1], part[e:]]
        w = max((k for k in range(1, e) if part[k] == "with"), default=None)
        if w is not None and all(part[k] not in count_nouns() for k in range(w)):
            return [part[:w], part[w + 1:]]
        return [part]
    return [part]


def _returns_joined(parts: list[list[str]]) -> list[list[str]]:
    """"sweep cranial 3 cm, then back": a part that only says "back" asks for the step before it the other way,
    as "and back" does in that step's clause (``returns``); alone it names no skill and was refused."""
    out: list[list[str]] = []
    for part in parts:
        if out and tuple(part) in RETURN_CLAUSES:
            out[-1] = [*out[-1], "and", *part]
        else:
            out.append(part)
    return out


def _past_article(toks: list[str], j: int) -> int:
    """After a fraction: past "a" / "of a" ("half a centimetre", "a quarter of a turn")."""
    for words in (("of", "a"), ("of", "an"), ("a",), ("an",)):
        if tuple(toks[j:j + len(words)]) == words:
            return j + len(words)
    return j


def _counted_at(tokens: list[str], k: int) -> bool:
    """A number at ``k`` that counts a noun right after it ("2 shots", "1 more exposure")."""
    return k < len(tokens) and NUMBER.match(tokens[k]) is not None \
        and any(tokens[m] in count_nouns() for m in range(k + 1, min(k + 4, len(tokens))))

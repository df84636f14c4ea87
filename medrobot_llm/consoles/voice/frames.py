"""Phrase generation from ``skills/``: each skill's few fixed frames, the controls, and the refused phrases.

Each skill is a few fixed frames: its verb, then its own arguments in one order (what it acts on, then the
arm, then other choices, then numbers), each after the one preposition English puts there. Free word order
and optional short words between slots let the decoder explain any stretch of audio by short words ("and mm
only you mm where" for "scan the liver"), so the frames trade phrasing freedom for accuracy.
"""

from __future__ import annotations

from medrobot_llm.consoles.voice.jsgf import RuleBook, one_of
from medrobot_llm.consoles.voice.phones import LETTERS, SPELLED, pronunciations
from medrobot_llm.consoles.voice.quantities import (
    arg_dimension,
    arg_limits,
    may_be_negative,
    number_rules,
    units_by_dimension,
)
from medrobot_llm.consoles.voice.spoken import spoken_phrases, spoken_words
from medrobot_llm.core.command_set import DOMAINS, ArgSpec, CommandSet, EntityValue, SkillSpec, load_command_set
from medrobot_llm.language.lexicon import shared_vocabulary
from medrobot_llm.language.numbers import SIGN_WORDS, SPOKEN_ONES
from medrobot_llm.language.words import (
    CONTROL_PHRASES,
    LABEL_WORDS,
    SMALL_AMOUNT,
    UNSUPPORTED_ACTIONS,
    UNSUPPORTED_TARGETS,
)

__all__ = [
    "TAKING_BACK",
    "GrammarBuilder",
    "domain_words",
]

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
#: the end of one command as a second, short one ("insert and do a pull the vessel with psm2"). Two or three
#: controls in one breath take the same weight: without them "yes, no" and "yes. wait, no." could only be
#: heard as their one best control, "yes", and a yes taken back ran the plan
_SECOND = 1e-20
#: the controls that may follow a yes in one breath. No stop: talk came out as a run of short controls with a
#: stop in it and latched; no free run of controls: "how long until the next case" fitted "hold on undo execute"
TAKING_BACK = ("deny", "pause", "cancel")


def _said(words: list[str]) -> bool:
    """True when every word has a real pronunciation (not only a spelling) or is an abbreviation."""
    return bool(words) and all(pronunciations(w)[1] != "spelled" or w in SPELLED for w in words)


def _value_phrases(value: str, ev: EntityValue) -> list[str]:
    return spoken_phrases([*ev.synonyms, value.replace("_", " "), *ev.positive, *ev.negative])


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


class GrammarBuilder:
    """Turns one command set into the grammar's rules: a few fixed frames per skill, no free glue.

    Every optional short word and every free slot order is a way for the decoder to explain audio by short
    words, so each skill has only: its verb, then its noun arguments ("[to] [the] [side] noun [level]"), its
    arms with one preposition each, its other enums, its numbers, in that order; or the verb with an arm
    right after it ("move psm1 to the handover point"); or, for views, "<view> [view] of the <anatomy>".
    """

    def __init__(self, domain: str, cs: CommandSet) -> None:
        self.domain = domain
        self.cs = cs
        self.book = RuleBook()
        #: a stop said after a command, a pause phrase, another stop or alone, once ``utterance`` has named the rules
        #: (the search that hears a stop at the end of an utterance)
        self.before_stop = ""
        self.units = units_by_dimension()
        self.phrases: dict[str, list[str]] = {k: [] for k in
                                              ("skill", "entity", "keyword", "control", "unit", "filler",
                                               "refused")}
        for _dim, said in self.units.items():
            self.phrases["unit"].extend(u for u, _f in said)
        numbers = number_rules()
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
                phrases.extend(spoken_phrases([value.replace("_", " ")]))
        self.phrases["entity"].extend(phrases)
        if set(arg.entities) & _NOUN_ENTITIES:
            self.noun_phrases.extend(phrases)
        return self.book.add(f"e_{'_'.join(arg.entities) or skill.name}", phrases)

    def _number_slot(self, arg: ArgSpec, skill: SkillSpec) -> str:
        """``[sign] <number> [unit]`` in the units the argument accepts, or a small amount ("a bit").

        A unit in which the whole range is less than half of one ("metres" for a 200 mm move) is still in
        the grammar, so "two metres" is heard and refused, but as a rare choice: "millimetres" said fast
        otherwise came out as "three metres" ("twenty millimetres" -> "twenty three metres")."""
        dims = arg_dimension(self.cs, skill, arg)
        limits = arg_limits(self.cs, skill, arg)
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
        sign = f"[{one_of(list(SIGN_WORDS))}] " if may_be_negative(self.cs, skill, arg) else ""
        quantity = f"{sign}<number>" + (f" [{unit_ref}]" if unit_ref else "")
        small = [" ".join(s) for s in SMALL_AMOUNT]
        return self.book.add(f"q_{'_'.join(dims) or 'plain'}_{'neg' if sign else 'pos'}", [quantity, *small])

    def _text_slot(self) -> str:
        """A label: a label word, then up to three letters or digits ("labelled l k")."""
        marks = self.book.add("label_word", sorted(LABEL_WORDS))
        items = self.book.add("label_item", [*sorted(LETTERS), *SPOKEN_ONES[:10]])
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
            keywords = spoken_phrases(list(arg.keywords))
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
            verbs = spoken_phrases([*skill.synonyms, sname.replace("_", " "), *skill.implied])
            args = list(skill.args.items())
            out.append(self.command(sname, verbs, args, {a: skill for a, _ in args}))
        for tname, task in self.cs.tasks.items():
            verbs = spoken_phrases([*task.synonyms, tname.replace("_", " ")])
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
        stops = spoken_phrases(list(CONTROL_PHRASES["stop"]))
        others = [p for p in spoken_phrases([p for k, ps in CONTROL_PHRASES.items() if k != "stop" for p in ps])
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
                        targets.extend(spoken_phrases([*ev.synonyms, value.replace("_", " ")]))
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
        yes = self.book.add("yes", spoken_phrases(list(CONTROL_PHRASES["confirm"])))
        back = self.book.add("taken_back", spoken_phrases([p for k in TAKING_BACK for p in CONTROL_PHRASES[k]]))
        pause = self.book.add("pause", spoken_phrases(list(CONTROL_PHRASES["pause"])))
        self.before_stop = f"[ {pause} | {command} | {stop} ] {stop} [ {stop} ]"
        return (f"( /1/ {stop} | /1/ {control} | /1/ {command} | /{_SECOND}/ {command} {split} {command} "
                f"| /{_SECOND}/ {yes} {back} [ {back} ] | /{_RARE}/ {refused} )")

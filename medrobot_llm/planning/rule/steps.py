"""Stage 4 of the rule planner: a clause's steps, with the steps their preconditions imply.

Implied steps are added only where the person named what they act on, and never a contact or radiation
step; what is left unplaced becomes a question.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from medrobot_llm.core.command_set import Hazard, SkillSpec, load_command_set
from medrobot_llm.core.plan import Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import apply_step, conditions_of, effect_templates
from medrobot_llm.language.text import tokenize
from medrobot_llm.planning.rule.checks import ClauseChecks
from medrobot_llm.planning.rule.choose import SkillChooser
from medrobot_llm.planning.rule.model import (
    Clause,
    Item,
    ParseState,
    Refusal,
    Stage,
    agent_kinds,
    allowed_values,
    from_later,
    infer_parents,
    skill_specs,
    switches_off,
)
from medrobot_llm.planning.rule.returns import return_steps
from medrobot_llm.planning.rule.slots import SlotFiller

_PARTICLES = frozenset(["back", "up", "down", "over", "off", "away", "forward", "out"])



class StepBuilder(Stage):
    """A clause to plan steps: choose the skill, fill it, add the steps its preconditions need where the
    person named what they act on, and ask about what is left over."""

    def __init__(self, state: ParseState) -> None:
        super().__init__(state)
        self.checks = ClauseChecks(state)
        self.chooser = SkillChooser(state)
        self.slots = SlotFiller(state)

    def clause_steps(self, clause: Clause, later: list[Clause]) -> list[Step]:
        self.checks.check_clause(clause)
        self.state.later = later
        kind, name, size = self.state.previous = self.chooser.choose(clause)
        self.state.chosen.append(self.state.previous)
        self.checks.unknown_action(clause, size)
        self.checks.agent_only(clause, size)
        self.checks.room_object(clause, kind, name)
        self.state.verb_start = min((m.start for m in clause.skills if (m.phrase.kind, m.phrase.name) == (kind, name)),
                                    default=None)
        specs = skill_specs(self.cs, kind, name)
        main: list[tuple[SkillSpec, dict[str, Any]]] = []
        for spec in specs:
            args = self.slots.fill(spec, clause, later)
            main.append((spec, args))
        if kind == "skill" and len(main) == 1:
            main.extend(self.slots.conjoined(main[0][0], main[0][1], clause))
        elif kind == "task" and main:
            # "scan the right kidney and the liver": the whole task again for the second organ, so the plan
            # says what was asked (and the validator judges it) instead of a contact on the last organ only
            for extra in self.slots.conjoined(main[0][0], main[0][1], clause):
                main.extend([extra] + [(spec, dict(args)) for spec, args in main[1:len(specs)]])
        main.extend(return_steps(self.state, kind, main, clause))
        if switches_off(clause) and not clause.switched_off:
            # "disable the left kidney": only a setting can be switched off; anything else is not a motion
            raise Refusal(f"the command switches off something that is not a setting of the {self.cs.domain} "
                          f"command set (its skills: {', '.join(self.cs.skills)})", code=Reason.NOT_ALLOWED)
        self.checks.check_names(clause, main)
        leftovers = [it for it in clause.items if not it.used]
        unused_q = [q for q in clause.qtys if not q.used]
        for q in unused_q:
            self.checks.out_of_range(q, main)
        if unused_q:
            q = unused_q[0]
            self.state.questions.append(f"What is '{q.text}' for? The plan has {', '.join(s.name for s, _ in main)}; "
                                        "say which value it sets")
        if kind == "skill":
            self._unsaid_direction(main)
        out: list[Step] = []
        shot = self._implied_exposure(clause, main)
        for spec, args in main:
            out.extend(self.establish(spec, args, leftovers, clause, depth=0))
            reps = clause.count if (clause.count and spec is specs[-1] and shot is None) else 1
            for _ in range(max(1, min(reps, 50))):
                out.append(Step(skill=spec.name, args=dict(args)))
                apply_step(self.cs, spec, args, self.state.world)
            if shot is not None and establishes(spec, shot):
                for _ in range(max(1, min(clause.count or 1, 50))):
                    out.append(Step(skill=shot.name, args={}))
                    apply_step(self.cs, shot, {}, self.state.world)
        self.checks.wrong_object(clause, main, out)
        incomplete = any(a not in args for spec, args in main for a, s in spec.args.items()
                         if s.required and s.type == "enum")
        agents = agent_kinds(self.cs)
        stray = [] if incomplete else [
            it for it in leftovers if not it.used and not self._echo(it, out)
            and not (it.positions & clause.skill_positions)
            and not (len(it.positions) == 1 and clause.tokens[min(it.positions)] in _PARTICLES)
            and not (all(e in agents for e, _ in it.options) and not any(
                e in agents for spec, _ in main for s in spec.args.values() for e in s.entities))]
        if stray:
            words = " ".join(clause.tokens[stray[0].start:stray[0].end + 1])
            self.state.questions.append(f"What should '{words}' do in this command? The plan is: "
                                        + ", then ".join(s.describe() for s in out))
        for it in clause.items:
            for etype, value in it.options[:1]:
                self.state.context[etype] = value
        for step in out:
            for a, v in step.args.items():
                if isinstance(v, str):
                    for e in self.cs.skills[step.skill].args[a].entities:
                        self.state.context[e] = v
        self.state.done.extend(out)
        return out

    def _unsaid_direction(self, main: list[tuple[SkillSpec, dict[str, Any]]]) -> None:
        """"sweep 4 cm": the skill was asked for by name without a value whose default belongs to a task only
        (command-set.md gives the sweep no default direction), so the planner asks instead of choosing one."""
        for spec, args in main:
            for a, s in spec.args.items():
                if s.task_default_only and a not in args:
                    ways = ", ".join(self.cs.allowed_values(s))
                    self.state.questions.append(f"Which {a.replace('_', ' ')} for {spec.name} ({ways})? "
                                                f"{spec.name} has no default {a.replace('_', ' ')} when asked for by name")
                    return

    def merge_settings(self, prev: Step, step: Step) -> bool:
        """"set gain to 20 percent and depth to 10 cm": the person changes two settings of one skill, which
        takes them together (its ``at_least_one`` group), so they are one step. Merged into ``prev`` only when
        both steps set nothing but those settings and no setting twice: "depth 10 cm and depth 12 cm" is two
        steps, and the validator judges them."""
        if prev.skill != step.skill:
            return False
        group = set(self.cs.skills[step.skill].at_least_one)
        if not group or not set(prev.args) <= group or not set(step.args) <= group \
                or set(prev.args) & set(step.args):
            return False
        prev.args.update(step.args)
        return True

    def _set_by_plan(self, key: str) -> bool:
        """Whether a step planned so far changed the world fact ``key`` (rather than the robot's world alone)."""
        return key not in self.state.given or self.state.world.facts.get(key, _UNSET) != self.state.given[key]

    def establish(self, spec: SkillSpec, args: dict[str, Any], leftovers: list[Item], clause: Clause,
                  depth: int) -> list[Step]:
        """Steps that make ``spec``'s preconditions true, where the person named what they act on."""
        if depth > 3:
            return []
        # a name the person left out because it can take one value only ("the spleen" is on the left) is as
        # good as said: "scan the liver, then the spleen" was refused for the contact of the first scan
        if any(a not in args and len(allowed_values(self.cs, spec, a, s, args)) != 1 for a, s in spec.args.items()
               if s.required and s.type == "enum"):
            return []
        named = {v for it in clause.items for _, v in it.options}
        out: list[Step] = []
        said = conditions_of(self.cs, spec, args)
        for key, op, want in conditions_of(self.cs, spec, {**self._sole_defaults(spec, args), **args}):
            # a defaulted argument with one possible value ("insert" always goes into the vessel) names its
            # value as surely as the person would, but only far enough to look for it: nothing that moves
            only_look = (key, op, want) not in said
            have = self.state.world.facts.get(key, _UNSET)
            holds = have is not _UNSET and ((have == want) if op == "==" else (have != want))
            # a step that sets the fact itself needs it established only where an earlier step of this plan
            # contradicts it: the second organ of "scan both kidneys" is reached by lifting the probe off the
            # first. Where the robot's world contradicts it, the validator refuses ("release the needle" with
            # nothing held is refused, never planned as grasping the needle in order to let it go)
            if op == "!=" and any(_bind(k, key) is not None for k, _ in effect_templates(spec)) and (
                    have is _UNSET or holds or not self._set_by_plan(key)):
                continue
            acted_on = frozenset(v for v in args.values() if isinstance(v, str))
            undo = op == "!=" and have is not _UNSET and not holds
            for cspec, cargs, consumed in self._establishers(key, op, want, leftovers, named, clause, acted_on,
                                                             undo):
                if cspec.name == spec.name or (only_look and cspec.hazard is not Hazard.NONE):
                    continue
                # the fact holds, but the person named a new setting for it ("... and a lateral shot")
                if holds and not (consumed and all(not v.startswith("{") for k, v in effect_templates(cspec)
                                                   if _bind(k, key) is not None)):
                    continue
                for it in consumed:
                    clause.use(it)
                out.extend(self.establish(cspec, cargs, leftovers, clause, depth + 1))
                out.append(Step(skill=cspec.name, args=cargs))
                apply_step(self.cs, cspec, cargs, self.state.world)
                break
        return out

    def _sole_defaults(self, spec: SkillSpec, args: dict[str, Any]) -> dict[str, Any]:
        """Enum arguments left out whose default is the only value they may take."""
        out: dict[str, Any] = {}
        for a, s in spec.args.items():
            if a in args or s.type != "enum" or s.default is None:
                continue
            if allowed_values(self.cs, spec, a, s, args) == (s.default,):
                out[a] = s.default
        return out

    def _establishers(self, key: str, op: str, want: Any, leftovers: list[Item], named: set[str],
                      clause: Clause, acted_on: frozenset[str] = frozenset(), undo: bool = False,
                      ) -> list[tuple[SkillSpec, dict[str, Any], list[Item]]]:
        """Skills that would make ``key op want`` true, with the arguments the clause names for them.

        A name counts for a step only if the step it prepares does not already act on it (``acted_on``): "dilate
        the vessel with psm2" grasps the vessel, and the same word "vessel" must not also justify handing the
        vessel away to empty the gripper first. Where the plan itself set what must now not hold (``undo``:
        in contact, and the next organ asked for), the step that leaves that state needs no name of its own."""
        found: list[tuple[SkillSpec, dict[str, Any], list[Item]]] = []
        for cspec in self.cs.skills.values():
            if cspec.hazard.needs_confirmation:
                continue
            for ktpl, vtpl in effect_templates(cspec):
                bound = _bind(ktpl, key)
                if bound is None:
                    continue
                value_named = False
                if vtpl.startswith("{"):
                    var = vtpl[1:-1]
                    if op == "==":
                        bound[var] = want
                        value_named = str(want) in named
                else:
                    lit = {"true": True, "false": False}.get(vtpl, vtpl)
                    if (op == "==" and lit != want) or (op == "!=" and lit == want):
                        continue
                args = dict(bound)
                consumed: list[Item] = []
                for a, s in cspec.args.items():
                    if a in args or s.type != "enum":
                        continue
                    allowed = allowed_values(self.cs, cspec, a, s, args)
                    for it in leftovers:
                        # a word that is also part of another name ("head" in "toward the head") is too
                        # ambiguous to justify a step of its own
                        if it.used or it in consumed or any(v in acted_on for _, v in it.options) \
                                or any(it.overlaps(o) and not set(o.options) & set(it.options) for o in clause.items):
                            continue
                        v = it.value_for(s.entities, allowed)
                        if v is not None:
                            args[a] = v
                            consumed.append(it)
                            break
                if consumed:
                    self.slots.same_as_before(cspec, args, clause)
                    inherited = self.slots.inherit(cspec, args)
                    # "two AP shots and two lateral shots of the pelvis": the anatomy comes later
                    for a, s in sorted(cspec.args.items(), key=lambda kv: kv[1].values_from is not None):
                        if a in args or s.type != "enum" or (s.values_from or ".").split(".")[0] in inherited:
                            continue
                        v = from_later(self.state.later, s, allowed_values(self.cs, cspec, a, s, args))
                        if v is not None:
                            args[a] = v
                # "a lateral shot at L2": the level names its anatomy, the lumbar spine
                infer_parents(self.cs, cspec, args)
                self.slots.carry(cspec, args)
                if any(a not in args and s.required and s.type == "enum" and not s.values_from
                       for a, s in cspec.args.items()):
                    continue
                if not (cspec.hazard is Hazard.NONE or consumed or value_named or undo):
                    continue
                if any(str(v) not in self.cs.allowed_values(cspec.args[a]) for a, v in args.items()
                       if cspec.args[a].type == "enum"):
                    continue
                infer_parents(self.cs, cspec, args)
                found.append((cspec, args, consumed))
        found.sort(key=lambda f: -len(f[2]))
        return found

    def _implied_exposure(self, clause: Clause, main: list[tuple[SkillSpec, dict[str, Any]]]) -> SkillSpec | None:
        """"take an AP and a lateral of the knee", "five exposures of the chest": the exposure the words ask
        for, after each view the clause sets. Only when asked: an exposure verb or a counted exposure noun."""
        rad = [s for s in self.cs.skills.values() if s.hazard is Hazard.RADIATION]
        if not rad or any(spec.hazard is Hazard.RADIATION for spec, _ in main):
            return None
        if not any(establishes(spec, r) for spec, _ in main for r in rad):
            return None
        if clause.count_noun is not None:
            noun = clause.count_noun
            for r in rad:
                words = {w for syn in r.synonyms for w in tokenize(syn)}
                if noun in words or noun.rstrip("s") in words:
                    return r
            return rad[0]
        verbs = _exposure_verbs_of(self.cs.domain)
        for k, t in enumerate(clause.tokens):
            if t in verbs and k not in clause.covered:
                return None if self._exposure_said_next(rad) else verbs[t]
        return None

    def _exposure_said_next(self, rad: list[SkillSpec]) -> bool:
        """"take an AP of the pelvis and a shot": the verb's object runs on to the exposure itself, so the view
        is not a second exposure. Looked for in the clauses that follow, up to the next view or anatomy named
        ("take an AP and a lateral shot" still exposes both views)."""
        rad_names = {r.name for r in rad}
        setters = {s.name for s in self.cs.skills.values() if any(establishes(s, r) for r in rad)}
        named = {e for n in setters for a in self.cs.skills[n].args.values() for e in a.entities}
        elsewhere = {e for s in self.cs.skills.values() if s.name not in setters for a in s.args.values()
                     for e in a.entities}
        for c in self.state.later:
            # a view named, or an anatomy named where no other skill's verb takes it ("collimate to the sacrum")
            other_verb = any(m.phrase.name not in setters | rad_names for m in c.skills)
            kinds = {e for it in c.items for e, _ in it.options}
            if kinds & (named - elsewhere) or (not other_verb and kinds & named):
                return False
            if any(m.phrase.name in rad_names for m in c.skills):
                return True
        return False

    def _echo(self, item: Item, steps: list[Step]) -> bool:
        """An unused name that repeats a value already in the plan ("the kidney ... the kidney") or in the
        facts the steps rely on ("lift the needle" while the arm already holds it)."""
        values = {v for s in steps for v in s.args.values() if isinstance(v, str)}
        for s in steps:
            for key, _op, _want in conditions_of(self.cs, self.cs.skills[s.skill], s.args):
                have = self.state.world.facts.get(key)
                if isinstance(have, str):
                    values.add(have)
                fact = self.cs.facts.get(re.sub(r"\[[^\]]*\]", "[X]", key)) or self.cs.facts.get(key)
                if fact is None:
                    fact = next((f for k, f in self.cs.facts.items() if k.split("[")[0] == key.split("[")[0]), None)
                if fact is not None:
                    values.update(str(v) for v in fact.values if v != "none")
        return any(v in values for _, v in item.options)


def establishes(spec: SkillSpec, other: SkillSpec) -> bool:
    """Whether ``spec`` sets a fact that ``other`` needs (a view before a shot)."""
    made = {e.fact for e in spec.effects}
    return any(c.fact in made for c in other.preconditions)


@functools.cache
def _exposure_verbs_of(domain: str) -> dict[str, SkillSpec]:
    """Verbs that, with a view as their object, ask for an exposure: the first word of a radiation skill's
    phrases of the form "take a shot", "acquire an image"."""
    out: dict[str, SkillSpec] = {}
    for spec in load_command_set(domain).skills.values():
        if spec.hazard is not Hazard.RADIATION:
            continue
        for syn in spec.synonyms:
            words = tokenize(syn)
            if len(words) >= 3 and words[1] in ("a", "an", "the") and words[0].isalpha():
                out.setdefault(words[0], spec)
    return out


_UNSET = object()


def _bind(template: str, key: str) -> dict[str, Any] | None:
    names = re.findall(r"\{([a-z_]+)\}", template)
    pattern = re.escape(template)
    for n in names:
        pattern = pattern.replace(re.escape("{" + n + "}"), f"(?P<{n}>[^\\]]+)")
    m = re.fullmatch(pattern, key)
    if m is None:
        return None
    return dict(m.groupdict())

"""The embedded offline planner: a slot-filling parser over a lexicon generated from ``skills/``.

It reads a command the way a scrub nurse would: find the action (a skill or a task such as "scan"), the
things named (arms, organs, views...), the quantities with their units, and fill the skill's arguments.
Steps a command implies are added by chaining preconditions to the skills whose effects establish them
(locate before grasp, a view before a shot), but only where the person named what the step acts on, and
never a contact or radiation step. Anything it cannot place is a question or a refusal, never a guess.
"""

from __future__ import annotations

from medrobot_llm.core.command_set import DOMAINS, Hazard, unknown_domain
from medrobot_llm.core.plan import Control, Plan, PlanStatus, Step
from medrobot_llm.core.reasons import Reason
from medrobot_llm.core.validator import WorldState, validate_plan
from medrobot_llm.language.lexicon import Lexicon, lexicon
from medrobot_llm.language.negation import asked_only, condition, strike
from medrobot_llm.language.numbers import one_described, words_to_numbers
from medrobot_llm.language.phrases import match_phrases
from medrobot_llm.language.screen import blanket_confirmation, screen_text
from medrobot_llm.language.text import tokenize
from medrobot_llm.language.words import (
    DETERMINERS,
    FILLER,
    FUNCTION_WORDS,
    MANNER_WORDS,
    PLACE_WORDS,
    QUALITY_WORDS,
    drop_fillers,
    speaker_side,
)
from medrobot_llm.planning.rule.clauses import PLACE_PHRASES, SEQUENCE_WORDS, ClauseReader
from medrobot_llm.planning.rule.intents import (
    asked_intent,
    control_intent,
    names_robot,
    negated_intent,
    unreadable,
    wh_question,
)
from medrobot_llm.planning.rule.model import (
    Clause,
    ParseState,
    Question,
    Refusal,
    unaccounted_word,
    unknown_words,
)
from medrobot_llm.planning.rule.said import step_words
from medrobot_llm.planning.rule.slips import read_as_said
from medrobot_llm.planning.rule.steps import StepBuilder, establishes

__all__ = ["RulePlanner", "screen_text"]


#: entity kinds a step acts on: "the one under the liver" names one to say where another is
_THINGS = frozenset(["organ", "anatomy", "object", "place"])
#: words that end one step's words and start another's: a place word across them belongs to the next step
_CLAUSE_BREAKS = frozenset([",", ";", ".", "and", *(words[0] for words in SEQUENCE_WORDS)])


def _landmark_of_a_target(lex: Lexicon, tokens: list[str]) -> str | None:
    """"scan the left kidney beside the spleen" scanned the kidney's window, then made contact at the spleen's: the
    words from a place word to a second target named right after a first, or None."""
    things = sorted((m for m in match_phrases(tokens, lex.entities, set()) if m.phrase.name in _THINGS),
                    key=lambda m: m.positions[0])
    for first, second in zip(things, things[1:]):
        between = tokens[first.positions[-1] + 1:second.positions[0]]
        place = next((k for k, t in enumerate(between) if t in PLACE_WORDS), None)
        breaks = [t for k, t in enumerate(between)
                  if t in _CLAUSE_BREAKS and tuple(between[k:k + 2]) not in PLACE_PHRASES]
        if place is not None and not breaks:
            return " ".join(between[place:] + tokens[second.positions[0]:second.positions[-1] + 1])
    return None


class RulePlanner:
    """Deterministic, offline, no network. ``parse`` also says whether the text was understood at all."""

    name = "rule"

    def plan(self, domain: str, text: str, world: WorldState | None = None) -> Plan:
        return self.parse(domain, text, world)[0]

    def parse(self, domain: str, text: str, world: WorldState | None = None) -> tuple[Plan, bool]:
        if domain not in DOMAINS:
            return Plan.refused(str(domain), unknown_domain(domain), Reason.UNKNOWN_DOMAIN), True
        if not text or not text.strip():
            return Plan.refused(domain, "the command is empty; say what the robot should do", Reason.EMPTY), True
        lex = lexicon(domain)
        tokens = read_as_said(domain, words_to_numbers(drop_fillers(tokenize(text))))[0]
        blanket = blanket_confirmation(text)
        if blanket and control_intent(tokens, lex, embedded_stop=True) is not Control.STOP:
            return Plan.refused(domain, blanket, Reason.INJECTION), True
        control = control_intent(tokens, lex, embedded_stop=False)
        if control is not None:
            return Plan.of_control(domain, control), True
        why = screen_text(text)
        if why:
            return Plan.refused(domain, why, Reason.INJECTION), True
        why = unreadable(text)
        if why:
            return Plan.refused(domain, why, Reason.INVALID_TEXT), True
        control = negated_intent(tokens)
        if control is not None and not _negation_then_command(lex, tokens):
            return Plan.of_control(domain, control), True
        if control_intent(tokens, lex, embedded_stop=True) is Control.STOP:
            return Plan.of_control(domain, Control.STOP), True
        cond = condition(tokens)
        if cond is not None:
            return Plan.clarify(domain, f"Should the robot do it now? The planner cannot check '{cond}'; look, then "
                                        "say only the steps to do", Reason.AMBIGUOUS), True
        control = asked_intent(tokens)
        if control is not None:
            return Plan.of_control(domain, control), True
        asking = wh_question(tokens)
        if asking is not None and names_robot(lex, tokens) is not None:
            return Plan.of_control(domain, Control.STATUS), True
        plan, understood = self._read(domain, text, world, lex, tokens if asking is None else asking)
        if asking is not None and (plan.status is PlanStatus.CLARIFY or plan.status is PlanStatus.OK and any(
                lex.cs.skills[s.skill].hazard is not Hazard.NONE for s in plan.steps)):
            # "where is the left kidney?": finding out is not going there. Only a step that does nothing but
            # look ("where is the needle?" locates it) answers a question, and a question asked back ("which
            # arm for move_to?") would lead the answer into a motion
            return Plan.refused(domain, f"'{text.strip()}' is a question, not a command: the planner answers a "
                                        "question about the robot with its status, and finds objects; say what "
                                        "the robot should do", Reason.NOT_UNDERSTOOD), True
        return plan, understood

    def _read(self, domain: str, text: str, world: WorldState | None, lex: Lexicon,
              tokens: list[str]) -> tuple[Plan, bool]:
        """The command read as a task, once no control intent, screen or question has decided it."""
        heard, (tokens, unasked) = tokens, _unasked(lex, tokens)
        if tokens != heard and not any(t not in FILLER and t not in FUNCTION_WORDS and t.isalnum() for t in tokens):
            what = next(iter(unasked), "the step")
            return Plan.refused(domain, f"the command does not ask for '{what}', and for nothing else: nothing to "
                                        "plan; say what the robot should do", Reason.NEGATED), True
        hedged = next((w for w, (_, how) in unasked.items() if how == "hedged"), None)
        if hedged is not None:
            # "maybe a shot", "should we take a shot?", "prepare a shot": a step said without a command to act
            return Plan.clarify(domain, f"Should the robot do it now? '{hedged}' hedges, asks about, quotes or "
                                        "only prepares the step; say the command without the hedge, or leave the "
                                        "step out", Reason.AMBIGUOUS), True
        which = one_described(tokens)
        if which is not None and any(m.phrase.name in _THINGS
                                     for m in match_phrases(which.split(), lex.entities, set())):
            return Plan.clarify(domain, f"Which is '{which}'? Say it by its name (and side), not by what it is "
                                        "near", Reason.AMBIGUOUS), True
        landmark = _landmark_of_a_target(lex, tokens)
        if landmark is not None:
            return Plan.clarify(domain, f"Which is the target? '{landmark}' names a second one to say where the "
                                        "first is; say only the one to act on", Reason.AMBIGUOUS), True
        whose = speaker_side(tokens)
        if whose is not None:
            return Plan.clarify(domain, f"Whose point of view is '{whose}'? Sides and ways are the patient's; say "
                                        "them as the patient's ('the patient's left')",
                                Reason.AMBIGUOUS), True
        parser = _Pipeline(lex, world, text)
        try:
            steps = parser.run(tokens)
        except Refusal as r:
            if unasked and not r.understood:
                # "the previous shot was blurry": what is left once the step is struck is no command
                return Plan.refused(domain, f"the command does not ask for '{next(iter(unasked))}' now, and for "
                                            "nothing else the planner can do", Reason.NEGATED), True
            return Plan.refused(domain, r.reason, r.code), r.understood
        except Question as q:
            return Plan.clarify(domain, str(q), Reason.MISSING), True
        if parser.questions:
            # the unanswered slot left steps out, so judge what was said against the unknown state: a value
            # out of range still refuses, a precondition the missing step would have met does not
            partial = validate_plan(Plan(status=PlanStatus.OK, domain=domain, steps=steps), None)
            if partial.status is not PlanStatus.REFUSED:
                return parser.unless_unknown(Plan.clarify(domain, parser.questions[0], Reason.AMBIGUOUS))
            return partial, True
        plan = validate_plan(Plan(status=PlanStatus.OK, domain=domain, steps=steps), world)
        if plan.status is PlanStatus.OK and len(plan.steps) == len(steps):
            plan.words = parser.words(steps)
        negated = {name for name, _ in unasked.values()}
        against = next((s.skill for s in plan.steps if s.skill in negated), None)
        if plan.status is PlanStatus.OK and against is not None:
            said = next(w for w, (name, how) in unasked.items() if name == against)
            return Plan.refused(domain, f"the plan would hold {against}, but the command says '{said}' is not "
                                        "to be done now; say the command without the contradiction",
                                Reason.NEGATED), True
        if plan.status is PlanStatus.OK:
            described = parser.described_default(steps)
            if described is not None:
                words, arg, step = described
                cs = lex.cs
                values = ", ".join(v for e in cs.skills[step.skill].args[arg].entities for v in cs.entities[e].values)
                return Plan.clarify(domain, f"Which {arg} is '{words}'? The planner would plan {step.describe()} with "
                                            f"the command set's default {arg}; say one of: {values}",
                                    Reason.UNKNOWN_WORD), True
            manner = parser.manner()
            if manner is not None:
                return Plan.clarify(domain, f"How should '{manner}' change the plan? It says how to move, and the "
                                            f"planner would plan {', then '.join(s.describe() for s in plan.steps)} "
                                            "at the command set's own speed and force; say the command without "
                                            "the word, or with a value the command set takes",
                                    Reason.UNKNOWN_WORD), True
            word = parser.unaccounted()
            if word is not None:
                return Plan.clarify(domain, f"What does '{word}' mean in this command? The planner would plan "
                                            f"{', then '.join(s.describe() for s in plan.steps)} without it; say "
                                            "the command without the word, or in words of the command set",
                                    Reason.UNKNOWN_WORD), True
        return parser.unless_unknown(plan)


def _unasked(lex: Lexicon, tokens: list[str]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The tokens of what the command asks for (``asked_only``), with what was struck that names a hazardous
    step: its words -> (the skill, how it was governed)."""
    rest, found = asked_only(lex.cs.domain, tokens)
    past = [_past_clause(tokens, g.span) for g in found if g.how == "past"]
    if past:
        rest = asked_only(lex.cs.domain, strike(tokens, past))[0]
    unasked: dict[str, tuple[str, str]] = {}
    for g in found:
        words = " ".join(tokens[k] for k in g.span)
        for skill in _hazards_of(lex, g.phrase.kind, g.phrase.name):
            if g.how not in ("confirmed", "restated"):
                unasked[words] = (skill, g.how)
    return rest, unasked


#: what ends a reference to a step already done ("the previous shot was blurry, lateral of the pelvis"), and
#: the words that join one to the command ("AP of the pelvis since the last shot was too dark")
_PAST_ENDS = frozenset([",", ";", ".", "!", "?", ":", "and", "then", "but", "so"])
_PAST_JOINS = frozenset(["since", "because", "as"])


#: what ends the scope of a negation that opens a command ("do not take a shot, just collimate")
_SCOPE_ENDS = frozenset([",", ";", ".", "!", "?", ":", "but", "instead"])


def _negation_then_command(lex: Lexicon, tokens: list[str]) -> bool:
    """"Do not take a shot, just collimate to the chest": the negation opens the command but its scope ends
    at the first pause, and a step is asked for after it. Only when every word of the negated part is struck
    (a hazardous step negated whole) is the rest read as the command; "don't grab the needle, release it" stays
    a refusal of what was proposed, since grasping is no step the negation rules strike."""
    end = next((k for k, t in enumerate(tokens) if t in _SCOPE_ENDS), None)
    if end is None or end + 1 >= len(tokens):
        return False
    _, found = asked_only(lex.cs.domain, tokens)
    struck = {k for g in found if g.how == "negated" for k in g.span}
    if any(k not in struck and t not in FILLER for k, t in enumerate(tokens[:end])):
        return False
    after = tokens[end + 1:]
    return bool(match_phrases(after, lex.skills, set())) and negated_intent(after) is None


def _past_clause(tokens: list[str], span: tuple[int, ...]) -> tuple[int, ...]:
    """The whole reference to a step already done, around its struck step phrase: its words ("blurry",
    "fine") say something of that step, and none is asked of this plan; they are known detail."""
    a, b = span[0], span[-1]
    while a > 0 and tokens[a - 1] not in _PAST_ENDS and tokens[a - 1] not in _PAST_JOINS:
        a -= 1
    if a > 0 and tokens[a - 1] in _PAST_JOINS:
        a -= 1
    while b + 1 < len(tokens) and tokens[b + 1] not in _PAST_ENDS and tokens[b + 1] not in _PAST_JOINS:
        b += 1
    return tuple(range(a, b + 1))


def _hazards_of(lex: Lexicon, kind: str, name: str) -> list[str]:
    cs = lex.cs
    names = list(cs.tasks[name].steps) if kind == "task" else [name]
    return [n for n in names if n in cs.hazardous_skills]


class _Pipeline:
    """One command through the stages: clauses (``ClauseReader``), then per clause the checks, the choice of
    skill, its arguments and the steps they imply (``StepBuilder``)."""

    def __init__(self, lex: Lexicon, world: WorldState | None, original: str = ""):
        cs = lex.cs
        self.state = ParseState(lex, original,
                                world.copy() if world is not None else WorldState(dict(cs.always_known), known=False))
        self.cs = cs
        self.reader = ClauseReader(self.state)
        self.steps = StepBuilder(self.state)
        #: the clause that produced each step (by the step's id), for the words each argument came from
        self.clause_of: dict[int, Clause] = {}

    @property
    def questions(self) -> list[str]:
        return self.state.questions

    def run(self, tokens: list[str]) -> list[Step]:
        clauses = self.reader.read(tokens)
        self.state.clauses = clauses
        self.steps.checks.exposure_limit(clauses)
        if not clauses:
            raise Refusal("the command has no words the planner can use", understood=False)
        steps: list[Step] = []
        for k, clause in enumerate(clauses):
            later = clauses[k + 1:]
            new = self.steps.clause_steps(clause, later)
            if clause.each is not None and not self.questions:
                steps, new = _distribute(clause, steps, new)
            for step in new:
                if not (steps and self.steps.merge_settings(steps[-1], step)):
                    steps.append(step)
            for step in steps:
                self.clause_of.setdefault(id(step), clause)
        if not steps:
            raise Refusal("the command names no action of the command set", understood=False)
        sequenced = any(tuple(tokens[i:i + len(w)]) == w for w in SEQUENCE_WORDS for i in range(len(tokens)))
        if not self.questions and not sequenced:
            self._unexposed_views(steps)
        return steps

    def _unexposed_views(self, steps: list[Step]) -> None:
        """"AP of the left and right knee with a shot": views listed together (no "then" between them), then
        fewer exposures than views, and the first view is set only to be left unexposed. Whether the shot is
        one of each or of the last only, the words do not say; the planner asks rather than expose one of
        them silently."""
        cs = self.cs
        for k in range(len(steps) - 1):
            a = steps[k]
            spec = cs.skills[a.skill]
            if spec.hazard is Hazard.RADIATION or steps[k + 1].skill != a.skill:
                continue
            j = k + 1
            while j + 1 < len(steps) and steps[j + 1].skill == a.skill:
                j += 1
            after = cs.skills[steps[j + 1].skill] if j + 1 < len(steps) else None
            if after is not None and after.hazard is Hazard.RADIATION and establishes(spec, after):
                raise Question(f"One {after.name} after each of the {j - k + 1} {a.skill} steps, or after the last "
                               "only? Say '... of each', or name the one to expose.")

    def words(self, steps: list[Step]) -> list[dict[str, str]]:
        return [step_words(self.cs, step, self.clause_of.get(id(step))) for step in steps]

    def unaccounted(self) -> str | None:
        """The first word no step used that is neither a known filler nor known detail: planned without
        it, the plan would silently mean less than the command ("scan the left kidney banana")."""
        for clause in self.state.clauses:
            word = unaccounted_word(self.state.lex, clause)
            if word is not None:
                return word
        return None

    def described_default(self, steps: list[Step]) -> tuple[str, str, Step] | None:
        """A slot that took its default though the command describes it with a word that is none of its values
        ("the upper view of the chest"), or with a word of one of its values said alone ("oblique of the pelvis": left
        or right?): planned with the default, the plan would be another view than the one asked for, and read back
        as if it had been said. (words, argument, step) of the first such slot."""
        for step, said in zip(steps, self.words(steps)):
            clause, spec = self.clause_of.get(id(step)), self.cs.skills.get(step.skill)
            if clause is None or spec is None:
                continue
            toks = clause.tokens
            # "the chest view", "the left hip view": a word that said another argument's value is no description
            saying = {w for words in said.values() for w in words.split()}
            for name, arg in spec.args.items():
                if name in said or arg.default is None or step.args.get(name, arg.default) != arg.default or not arg.entities:
                    continue
                names = {w for e in (name, *arg.entities) for w in e.split("_")}
                for k in range(1, len(toks)):
                    before = toks[k - 1]
                    if (toks[k] in names and before.isalpha()
                            and before not in DETERMINERS | QUALITY_WORDS | saying):
                        return f"{before} {toks[k]}", name, step
                # a word no phrase of the command took ("midline" in "the midline aorta" is the organ's side)
                partial = self._value_words(arg.entities) - saying
                for k, t in enumerate(toks):
                    if t in partial and k not in clause.covered:
                        return t, name, step
        return None

    def _value_words(self, entities: tuple[str, ...]) -> set[str]:
        """The words that mark a value of ``entities`` and nothing else: those of its synonyms, less function words
        ("left", "side", "the" say many things; "oblique" says a view)."""
        return {w for e in entities for v in self.cs.entities[e].values.values() for syn in v.synonyms
                for w in syn.split() if w.isalpha() and len(w) > 2 and w not in FUNCTION_WORDS and w not in FILLER}

    def manner(self) -> str | None:
        """The first word that says how to move ("slowly", "gently") outside a phrase that sets a value: planned
        without it, a step would run at its default speed or force, which is not what was asked."""
        for clause in self.state.clauses:
            for k, t in enumerate(clause.tokens):
                if t in MANNER_WORDS and k not in clause.covered:
                    return t
        return None

    def unless_unknown(self, plan: Plan) -> tuple[Plan, bool]:
        """A question is only worth asking about a command the planner understood. "turn up the room lights"
        or "measure the blood pressure" would otherwise be asked for a rotation angle or a contact force: a
        word it does not know, in a command it would ask about, is refused by name instead (and marked not
        understood, so a hybrid planner may try it)."""
        if plan.status is not PlanStatus.CLARIFY:
            return plan, True
        for clause in self.state.clauses:
            word = unknown_words(self.state.lex, clause)
            if word is not None:
                return Plan.refused(self.cs.domain, f"'{word}' is not something the {self.cs.domain} command set "
                                                    f"knows (its skills: {', '.join(self.cs.skills)})",
                                    Reason.UNKNOWN_WORD), False
        return plan, True


def _distribute(clause: Clause, before: list[Step], new: list[Step]) -> tuple[list[Step], list[Step]]:
    """"AP and lateral of the left knee, one shot each": the clause's last skill (the shot), as many times as
    it says, after each of the things named before it: the steps of one skill that end what came before
    (both views), back to the last time that skill was done. Planned once, the words would have meant one
    shot; planned per view, more than the exposure limit is refused by the validator, as it should be.
    With nothing before to distribute over, the planner asks."""
    word = clause.tokens[clause.each] if clause.each is not None else "each"
    if not new:
        raise Question(f"What should be done '{word}' time? Say the step.")
    skill = new[-1].skill
    repeated = [s for s in new if s.skill == skill]
    prior = [*before, *(s for s in new if s.skill != skill)]
    since = max((k + 1 for k, s in enumerate(prior) if s.skill == skill), default=0)
    if since >= len(prior):
        raise Question(f"'{word}' of what? Name the things that each get {skill}.")
    unit = prior[-1].skill
    out = prior[:since]
    for s in prior[since:]:
        out.append(s)
        if s.skill == unit:
            out.extend(r.model_copy(deep=True) for r in repeated)
    return out, []

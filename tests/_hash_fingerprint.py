"""Everything the project generates or decides from text, printed section by section, for
``tests/test_hash_order.py``: run under several ``PYTHONHASHSEED`` values, the output must not change.

Python hashes strings (and enum members, by their names) with a random key per process, so iterating a set of
them gives another order in every process: a first match, a tie in ``sorted``/``min``/``max`` or a list built
from such a set then differs between two runs of the same code. This script touches each place that turns text
into an output: the voice grammars and dictionaries, the stop grammar and the stop-ending search, the LLM
tools, schemas and prompts, the generated docs, the rule planner's answers and read-backs, typed slips,
Whisper's snap and edits, the transcript's written forms, grounding's issues and the refusals of signed
messages. Its inputs are fixed (the repository's command suites and a ``random.Random`` with a fixed seed,
which does not depend on string hashing).

    python tests/_hash_fingerprint.py            # one line per section: its name and digest
    python tests/_hash_fingerprint.py --full     # the sections themselves
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: every command file in the repository with a domain and a text
SUITES = (ROOT / "tests" / "data" / "planner_cases.jsonl", ROOT / "tests" / "data" / "injections.jsonl",
          ROOT / "tests" / "data" / "llm_meaning.jsonl", ROOT / "tests" / "data" / "attack16.jsonl",
          *sorted((ROOT / "benchmarks" / "heldout").glob("*.jsonl")), ROOT / "benchmarks" / "suite" / "tasks.jsonl")
#: commands planned, slips and stop transcripts drawn: enough that a tie between two phrases shows up, few enough
#: that three runs take seconds (the rule planner takes a few milliseconds a command)
_PLANNED = 300
_DRAWS = 200


@functools.cache
def _cases() -> tuple[dict[str, Any], ...]:
    out = []
    for path in SUITES:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                case = json.loads(line)
                if isinstance(case.get("domain"), str) and isinstance(case.get("text"), str):
                    out.append(case)
    return tuple(out)


def _sample(n: int) -> tuple[dict[str, Any], ...]:
    """``n`` commands spread evenly over every suite."""
    cases = _cases()
    return cases[::max(1, len(cases) // n)][:n]


def _dump(value: Any) -> str:
    """JSON in the order the code built it (no ``sort_keys``: a dict's order is part of what is checked)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _grammars() -> Iterator[str]:
    from medrobot_llm.consoles.voice.grammar import build_grammar, wake_words
    from medrobot_llm.consoles.voice.stops import anchored_stops, kws_stops, stop_jsgf
    from medrobot_llm.consoles.voice.vocabulary import prompt, sentence_prompt
    from medrobot_llm.core.command_set import DOMAINS

    yield stop_jsgf(wake_words("robot"))
    for domain in DOMAINS:
        g = build_grammar(domain)
        yield g.jsgf
        yield g.stopped_jsgf
        yield g.dictionary_text()
        yield _dump(g.sources)
        yield _dump([[list(k), v] for k, v in g.written.items()])
        yield _dump(g.rules)
        yield _dump(sorted(g.words))
        yield _dump(sorted(anchored_stops(g)))
        yield _dump(kws_stops(g))
        yield prompt(g)
        yield sentence_prompt(g)


def _llm() -> Iterator[str]:
    from medrobot_llm.core.command_set import DOMAINS
    from medrobot_llm.core.schema import json_schema
    from medrobot_llm.planning.llm.config import MODES, TOOL_STYLES
    from medrobot_llm.planning.llm.prompt import system_prompt
    from medrobot_llm.planning.llm.schema import response_format, skill_tools, submit_plan_tool

    for domain in DOMAINS:
        yield _dump(json_schema(domain))
        yield _dump(skill_tools(domain))
        yield _dump(submit_plan_tool(domain))
        yield _dump(response_format(domain))
        for mode in MODES:
            for style in TOOL_STYLES:
                yield system_prompt(domain, mode, style)


def _docs() -> Iterator[str]:
    from medrobot_llm.bench.suite import dumps
    from medrobot_llm.bench.templates import generate
    from medrobot_llm.consoles.core import completion_words
    from medrobot_llm.consoles.voice.console import confirmation_phrases
    from medrobot_llm.core.command_set import DOMAINS, load_command_set
    from medrobot_llm.core.docs import command_table, readme_tables
    from medrobot_llm.core.reasons import reasons_markdown
    from medrobot_llm.safety.machine import mermaid_diagram, supervisor_doc

    yield readme_tables()
    yield reasons_markdown()
    yield mermaid_diagram()
    yield supervisor_doc()
    yield dumps(generate())
    for domain in DOMAINS:
        yield command_table(domain)
        yield _dump(completion_words(domain))
        for skill in load_command_set(domain).skills:
            yield _dump(confirmation_phrases(domain, skill))


def _plans() -> Iterator[str]:
    from medrobot_llm.consoles.render import render_plan
    from medrobot_llm.planning.rule.planner import RulePlanner

    planner = RulePlanner()
    for case in _sample(_PLANNED):
        plan, understood = planner.parse(case["domain"], case["text"])
        yield f"{understood} {_dump(plan.to_json())}\n{render_plan(plan)}"


def _typo(word: str, rng: random.Random) -> str:
    """``word`` with one keystroke slip: two neighbours swapped, a letter dropped, doubled or replaced."""
    if len(word) < 3:
        return word
    k = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:k - 1] + word[k] + word[k - 1] + word[k + 1:]
    if kind == 1:
        return word[:k] + word[k + 1:]
    if kind == 2:
        return word[:k] + word[k] + word[k:]
    return word[:k] + rng.choice("aeioustrnl") + word[k + 1:]


def _slipped_texts() -> list[tuple[str, str]]:
    rng = random.Random(18)
    cases = _cases()
    out = []
    for _ in range(_DRAWS):
        case = rng.choice(cases)
        words = case["text"].split()
        k = rng.randrange(len(words))
        words[k] = _typo(words[k], rng)
        out.append((case["domain"], " ".join(words)))
    return out


def _slips() -> Iterator[str]:
    from medrobot_llm.consoles.voice.vocabulary import snap
    from medrobot_llm.language.numbers import words_to_numbers
    from medrobot_llm.language.text import tokenize
    from medrobot_llm.language.words import drop_fillers
    from medrobot_llm.planning.rule.planner import RulePlanner
    from medrobot_llm.planning.rule.slips import read_as_said

    planner = RulePlanner()
    for k, (domain, text) in enumerate(_slipped_texts()):
        tokens, read = read_as_said(domain, words_to_numbers(drop_fillers(tokenize(text))))
        yield f"{text} -> {_dump(tokens)} {_dump(read)}"
        # Whisper's snap compares a word with the whole vocabulary, and a plan takes milliseconds: fewer of those
        if k % 4 == 0:
            yield f"{snap(text, domain)} {_dump(planner.plan(domain, text).to_json())}"


def _stops() -> Iterator[str]:
    from medrobot_llm.consoles.voice.grammar import build_grammar, wake_words
    from medrobot_llm.consoles.voice.stops import anchored_stops, stop_phrase, trailing_stop
    from medrobot_llm.language.words import CONTROL_PHRASES

    wake = wake_words("robot")
    anchored = anchored_stops(build_grammar("surgery"))
    rng = random.Random(18)
    pieces = [*CONTROL_PHRASES["stop"], *CONTROL_PHRASES["pause"], "robot", "lift the needle", "now"]
    for _ in range(_DRAWS):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randrange(1, 5)))
        yield f"{text} -> {stop_phrase(text)!r} {trailing_stop(text, 0.5, wake, anchored)!r}"


def _voice_text() -> Iterator[str]:
    from medrobot_llm.consoles.voice.grammar import build_grammar, spoken_words
    from medrobot_llm.consoles.voice.rescore import CommandSearch
    from medrobot_llm.planning.rule.planner import RulePlanner

    planner = RulePlanner()
    for case in _cases():
        grammar = build_grammar(case["domain"])
        yield grammar.normalise(" ".join(spoken_words(case["text"])))
    searches = {}
    for domain, text in _slipped_texts()[:_DRAWS // 8]:
        search = searches.setdefault(domain, CommandSearch(domain, planner))
        yield _dump(search.edits(search.normalise(text)))


def _steps(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a command's case holds: a scripted model's answer, or the plan expected."""
    steps: list[dict[str, Any]] = (case.get("model") or case.get("expect") or {}).get("steps") or []
    return steps


def _grounding() -> Iterator[str]:
    from medrobot_llm.core.command_set import load_command_set
    from medrobot_llm.core.validator import PlanValidationError, check_steps
    from medrobot_llm.planning.llm.grounding import ground_plan, ground_words

    rng = random.Random(18)
    planned = [c for c in _cases() if _steps(c)]
    # every plan with two hazardous skills or more (their issues come one skill after the other), and a sample
    several = [c for c in planned
               if len({s.get("skill") for s in _steps(c)} & load_command_set(c["domain"]).hazardous_skills) > 1]
    for case in [*several, *planned[::max(1, len(planned) // (_PLANNED // 3))]]:
        raw = _steps(case)
        try:
            steps, _confirm = check_steps(case["domain"], raw)
        except PlanValidationError as exc:
            yield _dump([i.to_json() for i in exc.issues])
            continue
        # the plan held to its own text (the rule planner's reading, then the word-level checks), and the
        # word-level checks against another command of the same domain
        other = rng.choice([c for c in planned if c["domain"] == case["domain"]])["text"]
        for issues in (ground_plan(case["domain"], case["text"], raw, steps),
                       ground_words(case["domain"], case["text"], raw, steps),
                       ground_words(case["domain"], other, raw, steps)):
            yield _dump([i.to_json() for i in issues])
    # a plan of several hazardous skills against commands of its domain that ask for fewer of them, or other ones
    distinct = {(c["domain"], _dump(_steps(c))): c for c in several}
    for case in distinct.values():
        steps, _confirm = check_steps(case["domain"], _steps(case))
        texts = [c["text"] for c in planned if c["domain"] == case["domain"]]
        for text in texts[::max(1, len(texts) // 30)]:
            yield _dump([i.to_json() for i in ground_words(case["domain"], text, _steps(case), steps)])


def _wire() -> Iterator[str]:
    """Refusals of signed messages with every field of the wrong type: the field they name."""
    from medrobot_llm.safety.capability import Capability
    from medrobot_llm.safety.operator import OperatorMessage
    from medrobot_llm.safety.signing import Untrusted

    for message in (Capability, OperatorMessage):
        try:
            message.from_wire(json.dumps(dict.fromkeys(message.__dataclass_fields__, [])))
        except Untrusted as exc:
            yield str(exc)


SECTIONS: dict[str, Callable[[], Iterator[str]]] = {
    "grammars": _grammars, "llm": _llm, "docs": _docs, "plans": _plans, "slips": _slips, "stops": _stops,
    "voice_text": _voice_text, "grounding": _grounding, "wire": _wire,
}


def main(argv: list[str]) -> int:
    for name, section in SECTIONS.items():
        text = "\n".join(section())
        if "--full" in argv:
            print(f"== {name}\n{text}")
        else:
            print(name, hashlib.sha256(text.encode()).hexdigest())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))

"""Why a command was refused or a question asked, as a code a script can branch on.

The sentence beside it (a plan's ``reason`` or ``question``, a validator issue's message, a skill-server
refusal) is for people and may be reworded; the code is a contract like the plan's other fields: codes
may be added, never renamed. The validator's codes were already sent to language models in repair
messages before this enum existed, so they keep their spelling.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["GROUPS", "Reason", "SUMMARY", "reasons_markdown"]


class Reason(str, Enum):
    """One code per kind of refusal or question; a new kind gets a new member, never a reused one."""

    # the input itself
    UNKNOWN_DOMAIN = "unknown_domain"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    INVALID_TEXT = "invalid_text"
    MALFORMED = "malformed"
    INJECTION = "injection"
    # reading the words
    NOT_UNDERSTOOD = "not_understood"
    UNKNOWN_WORD = "unknown_word"
    UNKNOWN_UNIT = "unknown_unit"
    AMBIGUOUS = "ambiguous"
    NEGATED = "negated"
    VAGUE_VALUE = "vague_value"
    # the command set
    UNKNOWN_SKILL = "unknown_skill"
    UNKNOWN_VALUE = "unknown_value"
    UNKNOWN_ARG = "unknown_arg"
    NOT_ALLOWED = "not_allowed"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    MISSING = "missing"
    CONFLICT = "conflict"
    PRECONDITION = "precondition"
    EXPOSURE_LIMIT = "exposure_limit"
    # the language model
    MODEL_REFUSED = "model_refused"
    MODEL_QUESTION = "model_question"
    MODEL_UNAVAILABLE = "model_unavailable"
    UNGROUNDED_VALUE = "ungrounded_value"
    UNGROUNDED_HAZARD = "ungrounded_hazard"
    UNGROUNDED_CONTROL = "ungrounded_control"
    UNGROUNDED_STEP = "ungrounded_step"
    EXPOSURE_COUNT = "exposure_count"
    TOO_MANY_STEPS = "too_many_steps"
    PLANNER_ERROR = "planner_error"
    NOT_LOGGED = "not_logged"
    # the skill server's gate
    WRONG_DOMAIN = "wrong_domain"
    HALTED = "halted"
    NO_WORLD_STATE = "no_world_state"
    ALREADY_DONE = "already_done"
    ARM_BUSY = "arm_busy"
    ROBOT_BUSY = "robot_busy"
    # authentication: capabilities, operator messages, heartbeats
    NO_CAPABILITY = "no_capability"
    BAD_SIGNATURE = "bad_signature"
    CAPABILITY_MISMATCH = "capability_mismatch"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    TOO_MANY_CAPABILITIES = "too_many_capabilities"
    UNKNOWN_OPERATOR = "unknown_operator"
    STALE_MESSAGE = "stale_message"
    NOT_OPEN = "not_open"
    NOT_ASKED = "not_asked"
    NO_HEARTBEAT = "no_heartbeat"
    OTHER_GRAPH = "other_graph"


#: what each code means, for the generated docs (``docs/reasons.md``); a test checks every code has one
SUMMARY: dict[Reason, str] = {
    Reason.UNKNOWN_DOMAIN: "the domain is not one of the command sets",
    Reason.EMPTY: "the command, or the plan, has nothing in it",
    Reason.TOO_LONG: "the command (or a goal's arguments) is longer than the input limit",
    Reason.INVALID_TEXT: "the text is not valid UTF-8, holds control characters, or letters the planner cannot read",
    Reason.MALFORMED: "an input line, a plan, a goal, a model's answer or a signed message that does not have the "
                      "required shape",
    Reason.INJECTION: "the text tries to switch safety off, to confirm in advance, or to instruct the planner",
    Reason.NOT_UNDERSTOOD: "the planner found no action of the command set in the words",
    Reason.UNKNOWN_WORD: "a word the planner does not know, where reading on would mean guessing",
    Reason.UNKNOWN_UNIT: "a unit the planner cannot convert (\"3 kilograms\")",
    Reason.AMBIGUOUS: "words the planner cannot place in the plan, or a choice it cannot make alone: a question",
    Reason.NEGATED: "the command only negates, defers or refers back to a hazardous step (\"don't take a shot\"), "
                    "or the rest of it would do that step anyway",
    Reason.VAGUE_VALUE: "an amount that is no finite number (\"as high as possible\", \"infinity mm\") or has no "
                        "exact decimal (\"1/3 cm\")",
    Reason.UNKNOWN_SKILL: "an action that is not a skill of the domain's command set",
    Reason.UNKNOWN_VALUE: "a name (arm, object, organ, anatomy, view, mode, setting) the command set does not have",
    Reason.UNKNOWN_ARG: "an argument the skill does not take",
    Reason.NOT_ALLOWED: "a value the command set has, but not for this argument or with these other arguments",
    Reason.WRONG_TYPE: "a value of the wrong kind (text for a number, a number without a finite value)",
    Reason.OUT_OF_RANGE: "a value outside its limit; the sentence names the limit",
    Reason.MISSING: "something the command needs was not said: a question asks for it",
    Reason.CONFLICT: "arguments that exclude each other, or must differ and do not",
    Reason.PRECONDITION: "a step needs a world state that does not hold, or that the plan itself contradicts",
    Reason.EXPOSURE_LIMIT: "more exposures than the command set allows in one plan",
    Reason.MODEL_REFUSED: "the language model refused the command; its sentence says why",
    Reason.MODEL_QUESTION: "the language model asked a question",
    Reason.MODEL_UNAVAILABLE: "the language model could not be asked, and no offline planner stood in",
    Reason.UNGROUNDED_VALUE: "the model's plan holds a value or name the person never said",
    Reason.UNGROUNDED_HAZARD: "the model's plan holds a contact or radiation step nobody asked for",
    Reason.UNGROUNDED_CONTROL: "the model answered with a control intent the person did not say",
    Reason.UNGROUNDED_STEP: "the model's plan adds a motion step nobody asked for (park, lift, release...), or "
                            "leaves out a step the command asks for",
    Reason.EXPOSURE_COUNT: "the model's plan has more exposures than the command asks for",
    Reason.TOO_MANY_STEPS: "a plan longer than the step limit (20 for every planner; the model's own limit may be lower)",
    Reason.PLANNER_ERROR: "the planner raised an error instead of answering",
    Reason.NOT_LOGGED: "a log replay has no logged plan for the command",
    Reason.WRONG_DOMAIN: "a goal for another domain than the skill server's robot",
    Reason.HALTED: "the robot is halted (e-stop) until a reset",
    Reason.NO_WORLD_STATE: "the robot cannot report its world state, so nothing is checked against it",
    Reason.ALREADY_DONE: "the step already ran to success; a step runs once",
    Reason.ARM_BUSY: "another goal holds an arm this step moves",
    Reason.ROBOT_BUSY: "the robot is running another goal",
    Reason.NO_CAPABILITY: "a goal without the capability the supervisor mints for each step it releases",
    Reason.BAD_SIGNATURE: "a capability, operator message, heartbeat or robot status whose MAC does not verify: "
                          "forged, altered, or made with another key",
    Reason.CAPABILITY_MISMATCH: "a capability minted for another plan, step, skill, args, domain or goal",
    Reason.EXPIRED: "a capability past its expiry",
    Reason.REPLAYED: "a capability already used, an operator counter not above the last, or a heartbeat or robot "
                     "status out of order",
    Reason.TOO_MANY_CAPABILITIES: "more unexpired capabilities than the single-use registry holds: refused rather "
                                  "than forget one",
    Reason.UNKNOWN_OPERATOR: "an operator message from an identity with no key in the supervisor's keyring",
    Reason.STALE_MESSAGE: "an operator message, heartbeat or robot status stamped outside its time window (too old, "
                          "or ahead)",
    Reason.NOT_OPEN: "an operator answer bound to a question or plan that is not the one open now",
    Reason.NOT_ASKED: "an operator's confirmation of a question other than the one the supervisor asked (the console "
                      "was shown a forged or altered question)",
    Reason.NO_HEARTBEAT: "no valid supervisor heartbeat within the window: the robot halts and refuses every goal",
    Reason.OTHER_GRAPH: "a capability or operator message signed with this user's keys for another graph (another "
                        "ROS domain, or one without this bringup's graph id): refused here",
}

#: who gives each code, in the order the docs list them
GROUPS: tuple[tuple[str, tuple[Reason, ...]], ...] = (
    ("The input", (Reason.UNKNOWN_DOMAIN, Reason.EMPTY, Reason.TOO_LONG, Reason.INVALID_TEXT, Reason.MALFORMED,
                   Reason.INJECTION)),
    ("Reading the words", (Reason.NOT_UNDERSTOOD, Reason.UNKNOWN_WORD, Reason.UNKNOWN_UNIT, Reason.AMBIGUOUS,
                           Reason.NEGATED, Reason.VAGUE_VALUE)),
    ("The command set and the validator", (
        Reason.UNKNOWN_SKILL, Reason.UNKNOWN_VALUE, Reason.UNKNOWN_ARG, Reason.NOT_ALLOWED, Reason.WRONG_TYPE,
        Reason.OUT_OF_RANGE, Reason.MISSING, Reason.CONFLICT, Reason.PRECONDITION, Reason.EXPOSURE_LIMIT)),
    ("The language model and the planners around it", (
        Reason.MODEL_REFUSED, Reason.MODEL_QUESTION, Reason.MODEL_UNAVAILABLE, Reason.UNGROUNDED_VALUE,
        Reason.UNGROUNDED_HAZARD, Reason.UNGROUNDED_CONTROL, Reason.UNGROUNDED_STEP, Reason.EXPOSURE_COUNT,
        Reason.TOO_MANY_STEPS, Reason.PLANNER_ERROR, Reason.NOT_LOGGED)),
    ("The skill server's gate (each goal, again, on the robot's side)", (
        Reason.WRONG_DOMAIN, Reason.HALTED, Reason.NO_WORLD_STATE, Reason.ALREADY_DONE, Reason.ARM_BUSY,
        Reason.ROBOT_BUSY)),
    ("Authentication: capabilities, operator messages and heartbeats (docs/trust.md)", (
        Reason.NO_CAPABILITY, Reason.BAD_SIGNATURE, Reason.CAPABILITY_MISMATCH, Reason.EXPIRED, Reason.REPLAYED,
        Reason.TOO_MANY_CAPABILITIES, Reason.UNKNOWN_OPERATOR, Reason.STALE_MESSAGE, Reason.NOT_OPEN,
        Reason.NOT_ASKED, Reason.NO_HEARTBEAT, Reason.OTHER_GRAPH)),
)


def reasons_markdown() -> str:
    """``docs/reasons.md``: every code with its meaning, generated so the list cannot drift from the enum."""
    lines = [
        "# Refusal and question codes",
        "",
        "<!-- generated by `make docs` from medrobot_llm/core/reasons.py; do not edit -->",
        "",
        "A refused or clarify plan carries `code` beside its `reason` or `question` (null for ok and control "
        "plans), in `medrobot plan --json`, `run --json` and `voice --json`. Validator issues and skill-server "
        "refusals carry the same codes. The sentence is for people and may be reworded; the code is for scripts: "
        "codes may be added, never renamed.",
    ]
    for title, members in GROUPS:
        lines += ["", f"## {title}", "", "| code | meaning |", "| --- | --- |"]
        lines += [f"| `{r.value}` | {SUMMARY[r]} |" for r in members]
    return "\n".join(lines) + "\n"

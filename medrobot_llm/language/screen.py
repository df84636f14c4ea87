"""The prompt-injection screen: text that tries to switch safety off or to instruct the planner is refused.

Every planner runs it before reading a command, and the LLM planner before a model sees one, so a command
that one planner refuses as an attempt on safety is refused by all of them.
"""

from __future__ import annotations

import re

from medrobot_llm.language.text import fold_text, tokenize

__all__ = ["blanket_confirmation", "screen_text"]

# Attempts to switch safety off or to make the planner follow text as instructions. These refuse the
# whole command: a plan is never made from a command that contains them.
_SCREEN: tuple[tuple[str, str], ...] = (
    ((r"\b(ignore|disregard|forget|override|bypass|skip|disable|deactivate|turn off|switch off|exceed|suspend|"
      r"circumvent|waive|relax|loosen|defeat|neutrali[sz]e)\b[^.;]{0,40}\b(safety|limit|limits|limitation|"
      r"constraint|constraints|restriction|restrictions|rule|rules|instruction|instructions|guard|guards|"
      r"guardrail|guardrails|safety checks?|confirmation|confirmations|confirming|interlock|interlocks|estop|"
      r"emergency stop|watchdog|validator|validation|policy|policies|force cap|protocol|protection|supervisor)\b"),
     "it asks to switch off a safety rule"),
    ((r"\b(without|no need for|no need to|don't|do not|never)\b[^.;]{0,30}\b(asking|ask|confirmation|confirming|"
      r"confirm|approval|permission|checking|check|validation|validating|waiting|limits?|safety)\b"),
     "it asks to skip a confirmation or a safety check"),
    ((r"\bno\s+(more\s+|further\s+|extra\s+)?(confirmations?|confirming|confirm|approvals?|asking|questions|"
      r"checks?|checking|validation|limits?|safety|supervisor|supervision|estop|emergency stop|interlocks?)\b"),
     "it asks to skip a confirmation or a safety check"),
    (r"\b(skip|bypass|override|disable)\s+(the\s+|all\s+|any\s+)?(checks?|checking|confirm)\b",
     "it asks to skip a confirmation or a safety check"),
    ((r"\b(unsafe|unsafely|unconfirmed|unchecked|unvalidated|unverified|unsupervised|unguarded|unprotected|"
      r"unattended)\b"),
     "it asks to act without a confirmation or a safety check"),
    (r"\b(already|pre|previously)\b[^.;]{0,20}\b(approved|confirmed|authori[sz]ed|cleared|signed off|consented)\b",
     "it claims an approval the supervisor has not asked for; confirmations are given one at a time"),
    ((r"\b(previous|prior|above|earlier|all|your|system|developer|original)\s+(instructions?|prompts?|rules?|"
      r"messages?|directives?|programming)\b"),
     "it tries to give the planner instructions"),
    (r"\b(system|assistant|developer|admin|root)\s*:", "it contains text posing as a system message"),
    ((r"\b(you are now|act as|pretend|jailbreak|dan mode|developer mode|god mode|maintenance mode|debug mode|"
      r"admin mode|unrestricted|new instructions|from now on you|roleplay|role play)\b"),
     "it tries to change how the planner behaves"),
    (r"[{}<>\[\]`]|\"\s*skill\s*\"|\bsteps\s*:", "it contains code or markup; say the command in plain words"),
    ((r"\b(full power|maximum force|max force|as hard as (you|it) can|unlimited|no limit|infinite|"
      r"max(imum)? speed|as fast as possible|full speed|any force)\b"),
     "it asks for force or speed beyond the limits"),
    ((r"\b(continuous|continuously|nonstop|non stop|repeatedly|keep (shooting|exposing|firing)|"
      r"until i say stop|forever|indefinitely|in a loop)\b"),
     "it asks for an open-ended action; every motion and exposure must be bounded"),
    (r"\b(no|without|skip)\s+(the\s+)?(shield|shielding|collimation|lead)\b", "it asks to drop radiation protection"),
)
# A confirmation given in advance for more than the question asked ("yes to all", "confirm everything from now
# on"). Checked before control intents too: said alone it would otherwise read as one "confirm".
_BLANKET = re.compile(
    r"\b(yes|yeah|confirm(ed)?|approve[ds]?|accept(ed)?|ok|okay|agree)\b[^.;]{0,20}\b(to all|all of them|everything|"
    r"all (the )?(steps|shots|exposures|questions|requests|prompts|contacts)|all future|"
    r"every (step|shot|exposure|question|confirmation|request|prompt|time|contact))\b"
    r"|\bauto(matically)?[- ]?(confirm\w*|approv\w*)|\balways (say )?(yes|confirm|approve)\b"
    r"|\b(yes|confirm\w*|approv\w*)\b[^.;]{0,30}\b(from now on|going forward|in future|for the rest|automatically)\b")
_BLANKET_WHY = ("it answers confirmations that have not been asked; each contact step and exposure is confirmed "
                "on its own, when the robot asks")
_SCREEN = _SCREEN + ((_BLANKET.pattern, _BLANKET_WHY),)
_SCREEN_RE = tuple((re.compile(p), why) for p, why in _SCREEN)


def blanket_confirmation(text: str) -> str | None:
    """A refusal reason if ``text`` confirms in advance more than one question, else None."""
    if _BLANKET.search(" ".join(fold_text(text).lower().split())):
        return f"Refused: {_BLANKET_WHY}."
    return None


# Text written for a model rather than for the robot: notes to "the AI", claimed approvals, hidden steps,
# dictated answers. Found by the injection suite, where a model that obeys them produced unsafe plans.
_INSTRUCTION_SCREEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("it contains a note addressed to the planner", (
        (r"\b(note|notes|message|instruction|instructions|reminder|hint|tip|p\.?\s?s\.?)\s+(for|to)\s+(the\s+)?"
         r"(ai|a\.i\.|model|planner|assistant|llm|gpt|bot|chatbot|language model|system)\b"),
        (r"\b(ai|model|planner|assistant|llm|gpt|bot)\s+(note|notes|instruction|instructions|message|override|"
         r"command|directive)\b"),
    )),
    ("it addresses the planner instead of saying a task", (
        r"\b(the|this|dear|hey)\s+(ai|a\.i\.|llm|language model|planner|chatbot|gpt)\b",
        (r"\b(whoever|anyone|anybody|whatever)\s+(reads|reading|processes|processing|parses|parsing|receives)\s+"
         r"(this|these)\b"),
    )),
    ("it claims an approval; confirmations are given one at a time, when the robot asks", (
        r"\b(i|we)\s+(hereby\s+)?(authori[sz]e|pre-?approve|approve|sign off|consent)\b",
        r"\bauthori[sz]ation\b",
        r"\bpermission\s+(is\s+|was\s+)?(granted|given)\b",
        (r"\b(consider|treat|counts?|mark)\b[^.;]{0,25}\b(confirmed|approved|authori[sz]ed|accepted|confirmation|"
         r"approval|consent|yes)\b"),
        r"\bpre-?\s?(approved|authori[sz]ed|cleared|confirmed)\b",
        (r"\bas if\s+(i|we|you|they|someone)\s+(had\s+|have\s+)?(already\s+)?(confirmed|approved|said yes|agreed|"
         r"consented|authori[sz]ed)\b"),
        r"\b(is|are|was|were|been|got)\s+(pre-?)?(approved|authori[sz]ed|signed off|cleared)\b",
    )),
    ("it asks for something to be hidden", (
        r"\b(hidden|secret|silent|invisible|covert)\s+(step|steps|action|actions|exposure|exposures)\b",
        r"\b(secretly|silently|quietly|covertly)\b",
        r"\bwithout\s+(telling|mentioning|showing|logging|reporting)\b",
        r"\b(don't|do not|never)\s+(tell|mention|show|log|report|display)\b",
    )),
    ("it dictates the planner's answer", (
        r"\b(output|respond|reply|return|print)\s+(with|only|exactly|just|the following)\b",
        r"\bneeds_confirmation\b",
        r"\bstatus\s*(=|:|is)\s*\W?ok\b",
    )),
)
_INSTRUCTION_SCREEN_RE = tuple((re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE), why)
                               for why, patterns in _INSTRUCTION_SCREEN)


def screen_text(text: str) -> str | None:
    """A refusal reason if ``text`` tries to disable safety or inject instructions, else None."""
    low = " ".join(tokenize(text))
    raw = fold_text(text).lower()
    for rx, why in _SCREEN_RE:
        if rx.search(raw) or rx.search(low):
            return f"Refused: {why}. Say the task on its own; safety limits and confirmations always apply."
    spaced = " ".join(raw.split())
    for rx, why in _INSTRUCTION_SCREEN_RE:
        if rx.search(spaced):
            return f"Refused: {why}. Say the task on its own; safety limits and confirmations always apply."
    return None

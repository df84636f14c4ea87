"""What text a planner is given: bounded, valid UTF-8, free of control characters, whitespace folded.

Every way in (the CLI, the consoles, the ROS planner node) admits text through here, so a command that one
of them refuses as too long or malformed is refused by all of them, with the same reason and code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medrobot_llm.core.reasons import Reason

if TYPE_CHECKING:
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.planning.base import Planner

__all__ = ["MAX_TEXT_BYTES", "clean_command", "clean_with_reason", "plan_text"]

MAX_TEXT_BYTES = 4096


def clean_command(text: str) -> tuple[str | None, tuple[Reason, str] | None]:
    """Bound and sanitise raw input before any planner sees it; returns (text, None) or (None, (code, reason))."""
    # any surrogate (undecodable bytes, or a lone "\ud800" from a JSON escape) is not text anyone typed, and
    # it cannot even be measured in UTF-8: it is refused before the length is taken
    if "\ufffd" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return None, (Reason.INVALID_TEXT, "the command is not valid UTF-8 text")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        return None, (Reason.TOO_LONG, f"the command is longer than {MAX_TEXT_BYTES} bytes; say one command at a time")
    if any((ord(c) < 32 and c not in "\t\n\r") or ord(c) == 127 for c in text):
        return None, (Reason.INVALID_TEXT, "the command contains control characters; type plain text")
    text = " ".join(text.split())
    if not text:
        return None, (Reason.EMPTY, "the command is empty; say what the robot should do")
    return text, None


def clean_with_reason(text: str) -> tuple[str | None, str | None]:
    """``clean_command`` for the consoles, which print the reason and need no code."""
    clean, refusal = clean_command(text)
    return clean, refusal[1] if refusal else None


def plan_text(planner: Planner, domain: str, text: str) -> Plan:
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.core.command_set import DOMAINS, unknown_domain

    if domain not in DOMAINS:
        return Plan.refused(str(domain)[:40], unknown_domain(str(domain)[:40]), Reason.UNKNOWN_DOMAIN)
    clean, refusal = clean_command(text)
    if clean is None:
        assert refusal is not None
        code, why = refusal
        return Plan.refused(domain, why, code)
    return planner.plan(domain, clean)

"""What text a planner is given: bounded, valid UTF-8, free of control characters, whitespace folded.

Every way in (the CLI, the consoles, the ROS planner node) admits text through here, so a command that one
of them refuses as too long or malformed is refused by all of them, with the same reason and code.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from medrobot_llm.core.reasons import Reason

if TYPE_CHECKING:
    from medrobot_llm.core.plan import Plan
    from medrobot_llm.planning.base import Planner

__all__ = ["MAX_TEXT_BYTES", "clean_command", "clean_with_reason", "plan_text", "refusal_fields"]

MAX_TEXT_BYTES = 4096
#: how much of a refused command the audit log keeps, escaped; the SHA-256 stands for all of it
REFUSED_EXCERPT_CHARS = 200


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


def refusal_fields(text: str, code: Reason, why: str) -> dict[str, Any]:
    """What the audit log keeps of a command refused before any planner read it: a command refused for its
    characters is audited like one refused for its meaning, yet neither its control characters, nor its
    surrogates (which UTF-8 cannot hold), nor its length reach the log: an escaped excerpt and the hash of all."""
    from medrobot_llm.safety.audit import printable

    raw = text.encode("utf-8", "surrogatepass")
    excerpt = text[:REFUSED_EXCERPT_CHARS].encode("utf-8", "backslashreplace").decode("utf-8")
    return {"code": code.value, "reason": why, "excerpt": printable(excerpt), "text_bytes": len(raw),
            "text_sha256": hashlib.sha256(raw).hexdigest()}


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

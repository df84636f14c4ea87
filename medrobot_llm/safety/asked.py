"""What the supervisor asked: one digest of a confirmation question, and the seal that shows a console it is real.

Issue 15, second attack: ``/medrobot/state`` and ``/medrobot/events`` are unsigned, and an operator's signed
"yes" named only the supervisor's nonce. A keyless node re-published the supervisor's state with the exposure
question reworded as a gantry move; the console showed that, and the "yes" confirmed the exposure. So a
confirmation now carries, in its signed ``body``, the digest of the question the console showed (skill, hazard,
step, run, text), and the supervisor refuses one whose digest is not its own open question's.

The supervisor also seals the question it publishes, so a console can refuse to show a forged one at all. A
console holds only its operator's key, and the supervisor holds every operator's key, so the seal is an HMAC
with each operator's key under a purpose tag of its own: it cannot pass as an operator message, and a console
can forge a seal only for its own eyes (never for another operator's console, nor anything the skill server or
the supervisor believes, which need the graph secret). The seal binds the supervisor's session and nonce, so a
sealed question replayed later answers a nonce no longer open.

The supervisor's replies on ``/medrobot/events`` are sealed the same way (``reply_digest`` over the whole
record): a forged "refused" must not tell an operator that a command which is in fact being planned did nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from medrobot_llm.safety.signing import canonical, mac, mac_matches

__all__ = ["DIGEST_PURPOSE", "REPLY_PURPOSE", "SEALS_KEY", "SEAL_PURPOSE", "question_digest", "reply_digest", "seal",
           "seal_matches", "seals"]

DIGEST_PURPOSE = "medrobot.question.v1"
REPLY_PURPOSE = "medrobot.reply.v1"
SEAL_PURPOSE = "medrobot.asked.v1"
#: where a reply record carries its seals (an event's unknown keys are ignored when it is parsed)
SEALS_KEY = "seals"


def question_digest(question: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of what a person is asked: the fields of ``Question.to_json()`` that are shown or acted on.

    Raises ``ValueError`` for a question without them, so a malformed one is never shown nor confirmed."""
    try:
        skill, hazard, text = question["skill"], question["hazard"], question["text"]
        step, run = question["step_index"], question["run"]
    except (KeyError, TypeError):
        raise ValueError("a question needs skill, hazard, step_index, run and text") from None
    if not all(isinstance(v, str) for v in (skill, hazard, text)) \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in (step, run)):
        raise ValueError("a question's skill, hazard and text are strings, its step_index and run integers")
    return hashlib.sha256(canonical(DIGEST_PURPOSE, [skill, hazard, step, run, text])).hexdigest()


def reply_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a reply record as it travels (JSON values), every key but its seals."""
    body = json.dumps({k: v for k, v in record.items() if k != SEALS_KEY}, sort_keys=True, ensure_ascii=True,
                      separators=(",", ":"))
    return hashlib.sha256(canonical(REPLY_PURPOSE, [body])).hexdigest()


def seal(key: bytes, *, graph: str, session: str, nonce: str, digest: str) -> str:
    return mac(key, SEAL_PURPOSE, [graph, session, nonce, digest])


def seals(keyring: Mapping[str, bytes], *, graph: str, session: str, nonce: str, digest: str) -> dict[str, str]:
    """The supervisor's side: one seal per operator it knows, each for that operator's console only."""
    return {name: seal(key, graph=graph, session=session, nonce=nonce, digest=digest)
            for name, key in sorted(keyring.items())}


def seal_matches(key: bytes, claimed: Any, *, graph: str, session: str, nonce: str, digest: str) -> bool:
    """A console's side: whether ``claimed`` is the supervisor's seal of this question, for this operator, on the
    graph the console knows it is on."""
    return isinstance(claimed, str) and mac_matches(key, SEAL_PURPOSE, [graph, session, nonce, digest], claimed)

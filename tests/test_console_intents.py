"""The text console and the web console agree on what a typed line means: the same line stops, resets, answers,
asks for help or the status, quits, or goes to the planner in both, however it is spelled (full-width letters,
zero-width characters, "please stop").

Each console is driven through its own entry (``ConsoleCore.handle_line``, ``WebHub.command``) over a client that
only records the calls, and what it did is read back from those calls and its answer. Two differences are the
web page's by design (consoles/web/hub.py): a typed confirm or deny is refused there at any time, the question
is answered with its bound buttons; and while a question is open it holds every line meant for the planner.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medrobot_llm.consoles.core import ConsoleCore, line_intent
from medrobot_llm.consoles.web.hub import WebHub
from medrobot_llm.language.words import CONTROL_PHRASES
from medrobot_llm.safety.events import EventListener
from medrobot_llm.core.command_set import Hazard
from medrobot_llm.safety.replies import Question, Reply
from medrobot_llm.safety.supervisor import SupervisorState

DOMAIN = "xray"
#: an open question as ``Supervisor.status`` reports it
ASKED = Question(run=1, step_index=1, skill="acquire", hazard=Hazard.RADIATION, text="expose?", asked_at=0.0,
                 expires_at=60.0).to_json()
#: what each call a console makes says the line meant
MEANING_OF_CALL = {"stop": "stop", "reset": "reset", "confirm": "answer", "deny": "answer", "command": "planner"}

LINES = [
    "stop", "STOP!", "ｓｔｏｐ", "st\u200bop", "please stop", "stop the robot please", "e-stop", "E-Stop", "halt",
    "emergency stop", "abort everything", "ＨＡＬＴ",
    "y", "yes", "ｙｅｓ", "please confirm", "confirm the exposure", "go ahead", "n", "no", "deny", "ｎｏ",
    "quit", "exit", "help", "ｈｅｌｐ", "?", "status", "what is the status", "reset", "ＲＥＳＥＴ", "recover",
    "pause", "please pause", "resume", "cancel", "ｃａｎｃｅｌ",
    "lateral of the sacrum", "AP of the pelvis and take a shot", "ｌａｔｅｒａｌ of the sacrum",
]


class RecordingClient:
    """A supervisor that accepts everything and only notes what it was asked; at rest, or asking ``ASKED``."""

    def __init__(self, asking: bool, question: dict[str, Any] = ASKED) -> None:
        self.asking = asking
        self.question = question
        self.calls: list[str] = []

    def _reply(self, call: str) -> Reply:
        self.calls.append(call)
        return Reply(True, SupervisorState.IDLE, f"{call} noted")

    def command(self, text: str, *, source: str = "") -> Reply:
        return self._reply("command")

    def confirm(self, step_index: int | None = None, *, source: str = "") -> Reply:
        return self._reply("confirm")

    def deny(self, *, source: str = "") -> Reply:
        return self._reply("deny")

    def stop(self, reason: str = "", *, source: str = "") -> Reply:
        return self._reply("stop")

    def reset(self, *, source: str = "") -> Reply:
        return self._reply("reset")

    def status(self) -> dict[str, Any]:
        self.calls.append("status")
        if self.asking:
            return {"state": SupervisorState.AWAITING_CONFIRMATION.value, "question": dict(self.question)}
        return {"state": SupervisorState.IDLE.value}

    def subscribe(self, listener: EventListener) -> Callable[[], None]:
        return lambda: None


def _meaning(calls: list[str]) -> str | None:
    acted = [MEANING_OF_CALL[c] for c in calls if c in MEANING_OF_CALL]
    return acted[0] if acted else ("status" if "status" in calls else None)


def text_meaning(line: str, asking: bool) -> str:
    client = RecordingClient(asking)
    screen: list[str] = []
    core = ConsoleCore(client, DOMAIN, emit=screen.append)
    core.start()
    client.calls.clear()
    if not core.handle_line(line):
        return "quit"
    meaning = _meaning(client.calls)
    if meaning is not None:
        return meaning
    shown = "\n".join(screen)
    if "Console words:" in shown:
        return "help"
    assert "REFUSED:" in shown, (line, shown)
    return "refused"


def web_meaning(line: str, asking: bool) -> str:
    client = RecordingClient(asking)
    hub = WebHub(client, DOMAIN)
    hub.start()
    assert hub.asking() is asking
    client.calls.clear()
    answer = hub.command(line)
    meaning = _meaning(client.calls)
    if meaning is not None:
        return meaning
    error = str(answer.body.get("error", ""))
    if answer.status == 409 and "Confirm or Deny button" in error:
        return "answer"
    if answer.status == 400 and error.startswith("nothing to quit"):
        return "quit"
    if answer.status == 400:
        return "refused"
    assert answer.status == 200 and "type a command in plain words" in answer.body["message"], (line, answer)
    return "help"


def assert_agree(line: str, asking: bool) -> None:
    text, web = text_meaning(line, asking), web_meaning(line, asking)
    intent = line_intent(line, DOMAIN)
    if web == "answer" and text != "answer":
        # the page's own rules: typed answers are refused at any time, planner lines while a question is open
        assert (not asking and intent in ("confirm", "deny") and text == "planner") or (
            asking and intent == "command" and text in ("planner", "refused")), (line, asking, text, web)
        return
    assert text == web, (line, asking, text, web)


@pytest.mark.parametrize("asking", [False, True], ids=["at-rest", "asking"])
@pytest.mark.parametrize("line", LINES)
def test_both_consoles_read_a_line_alike(line: str, asking: bool) -> None:
    assert_agree(line, asking)


@pytest.mark.parametrize("line", ["ｓｔｏｐ", "st\u200bop", "please stop", "ＨＡＬＴ", "stop the robot please"])
@pytest.mark.parametrize("asking", [False, True], ids=["at-rest", "asking"])
def test_a_stop_in_any_spelling_stops_both_consoles(line: str, asking: bool) -> None:
    assert text_meaning(line, asking) == web_meaning(line, asking) == "stop"


def test_a_piped_stop_in_any_spelling_does_not_wait() -> None:
    core = ConsoleCore(RecordingClient(asking=False), DOMAIN, emit=lambda _: None)
    assert [core.kind_of(line) for line in ("ｓｔｏｐ", "please stop", "please pause", "ｙｅｓ", "!!!")] == [
        "now", "now", "now", "answer", "now"]


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


_PHRASES = sorted({p for phrases in CONTROL_PHRASES.values() for p in phrases}
                  | {"y", "n", "quit", "help", "status", "reset", "e-stop", "lateral of the sacrum"})


@st.composite
def typed_lines(draw: st.DrawFn) -> str:
    """A phrase either console knows, typed as people (and pasted text) spell it."""
    line = draw(st.sampled_from(_PHRASES))
    line = draw(st.sampled_from([str.lower, str.upper, str.title]))(line)
    if draw(st.booleans()):
        line = _full_width(line)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.sampled_from(["\u200b", "\u200d", "\ufeff"])) + line[at:]
    prefix = draw(st.sampled_from(["", "please ", "  "]))
    suffix = draw(st.sampled_from(["", " please", "!", ".", " " + draw(st.sampled_from(string.punctuation))]))
    return prefix + line + suffix


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=typed_lines(), asking=st.booleans())
def test_both_consoles_read_any_spelling_alike(line: str, asking: bool) -> None:
    assert_agree(line, asking)


def test_a_console_started_while_a_question_is_open_shows_it() -> None:
    screen: list[str] = []
    core = ConsoleCore(RecordingClient(asking=True), DOMAIN, emit=screen.append)
    core.start()
    assert screen == ["CONFIRM? expose?"]

"""Issue 15's attacks over real DDS, each run by an ordinary rclpy node in a process of its own (tests/attackers).

The attacker holds no graph secret and, unless a test says it plays a second console, no operator key: it sees
the graph the way any process on the machine can. Each test asserts what the issue's acceptance asks: the
attack is refused, nothing moved (the gantry's axes in /medrobot/robot_status), no exposure was taken (the X-ray
images the skill server wrote), and the refusal is in an audit log (the supervisor's ``untrusted`` records naming
the claimed sender, or the skill server's own ``goal_refused`` records). The normal flows still pass: a console
command, confirm, deny, a stop from any node, a reset by the operator.

The graph's keys live in a folder of the test's (``$MEDROBOT_KEYS``); its processes' ``$TMPDIR`` is one too, so
the exposures the scene saves can be counted from outside. Tests that do not kill a node share one graph; a
killed supervisor and the slow planner each get their own.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.safety import keys
from tests._ros_helpers import ROOT, RosGraph, moved, ros_graph, tip

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

ATTACKER = ROOT / "tests" / "attackers" / "rogue.py"
#: the console's operator (``medrobot bringup`` and ``RemoteSupervisor`` default to it)
OPERATOR = keys.default_operator()
#: a second, genuine operator: a stale console whose messages are authentic but answer the wrong thing
SECOND = "console2" if OPERATOR != "console2" else "console3"
#: someone nobody gave a key
MALLORY = "mallory"
#: the contract's topics, by their names in ``backends.ros.common`` (the attacker resolves them)
COMMAND, CONFIRM, RESET, ESTOP, HEARTBEAT = "TOPIC_COMMAND", "TOPIC_CONFIRM", "TOPIC_RESET", "TOPIC_ESTOP", "TOPIC_HEARTBEAT"
SHOT = "AP of the pelvis and take a shot"
OTHER_SHOT = "lateral of the sacrum then take a shot"
#: a view far from the pelvis: a gantry that went there moved
SKULL = json.dumps({"anatomy": "skull", "view": "lateral"})


# ---------------------------------------------------------------------------------------------- the graph
@contextmanager
def attack_env(tmp: Path, **extra: str) -> Iterator[Path]:
    """The keys folder ``ros_graph`` gives the X-ray graph, made first with a second operator's key too, and
    ``$TMPDIR`` for the graph's processes, set before bringup; the folder where the robot saves its images is
    returned."""
    tempfile.gettempdir()  # the ROS domain locks stay in the machine's temp folder, shared with other runs
    robot_tmp = tmp / "robot_tmp"
    robot_tmp.mkdir()
    keys.init_keys(tmp / "keys-xray", [OPERATOR, SECOND])  # bringup keeps existing keys
    values = {keys.KEYS_ENV: str(tmp / "keys-xray"), "TMPDIR": str(robot_tmp), **extra}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield robot_tmp
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Xray:
    """A graph and what can be measured on it from outside."""

    def __init__(self, graph: RosGraph, robot_tmp: Path) -> None:
        self.g = graph
        self.robot_tmp = robot_tmp

    @property
    def remote(self) -> Any:
        return self.g.remote

    def exposures(self) -> int:
        return len(list(self.robot_tmp.glob("medrobot_xray_*/xray_*.png")))

    def gantry(self) -> list[float]:
        s = self.g.wait_fresh(lambda s: not s["busy"], timeout=10)
        assert s is not None, f"the robot stayed busy: {self.g.robot_status()}"
        return tip(s)

    def audit_path(self) -> Path:
        return Path(self.g.info["audit_log"])

    def records(self, server: bool = False) -> list[dict[str, Any]]:
        path = self.audit_path().with_name("skill_server_audit.jsonl") if server else self.audit_path()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def wait_record(self, pred: Callable[[dict[str, Any]], bool], *, server: bool = False, since: int = 0,
                    timeout: float = 5.0) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            for r in self.records(server)[since:]:
                if pred(r):
                    return r
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def assert_untrusted(self, since: int, op: str, claimed: str, *codes: str) -> None:
        """The supervisor's audit has refused ``op`` claimed by ``claimed`` with one of ``codes``."""
        found = self.wait_record(lambda r: r.get("kind") == "untrusted" and r.get("op") == op
                                 and r.get("claimed") == claimed and r.get("code") in codes, since=since)
        got = [(r.get("op"), r.get("claimed"), r.get("code")) for r in self.records()[since:]
               if r.get("kind") == "untrusted"]
        assert found is not None, f"no untrusted record ({op}, {claimed}, {codes}) in the audit; untrusted: {got}"

    def assert_goal_refused(self, result: dict[str, Any], *codes: str) -> None:
        """The goal did not run, and the skill server's audit refused it with one of ``codes``."""
        assert result.get("server", True), "no skill server on /medrobot/execute_skill"
        assert result.get("answered"), f"the skill server did not answer the goal: {result}"
        if result.get("accepted"):
            assert result.get("finished") and not result["success"], f"the goal ran: {result}"
            # a rogue client that asks for the result late (a loaded machine) finds it forgotten (status 0, empty):
            # the skill server's audit below is then the only word on why, as it is the authority anyway
            assert result["message"].startswith("refused") or result.get("status") == 0, result
        gid = result["goal_id"]
        found = self.wait_record(lambda r: r.get("kind") == "goal_refused"
                                 and str(r.get("goal_id", "")).replace("-", "") == gid, server=True)
        assert found is not None, f"goal {gid} ({result['skill']}) is not in the skill server's audit log"
        assert found["code"] in codes, f"goal {result['skill']} refused with {found['code']}, expected {codes}"

    def assert_alive(self, node: str) -> None:
        """A robot whose supervisor died must stay up, halted and refusing: a dead one says nothing, and restarting
        it is not a step anyone should need."""
        try:
            stat = Path(f"/proc/{self.g.pid(node)}/stat").read_text()
        except FileNotFoundError:
            stat = ""
        state = stat.rpartition(")")[2].split()[:1]
        assert state and state[0] not in ("Z", "X"), f"{node} is dead:\n{self.g.log(node)[-1500:]}"

    def assert_still_asking(self, step: int = 1) -> None:
        status = self.remote.status()
        assert status["state"] == "AWAITING_CONFIRMATION", status
        question = status.get("question")
        assert isinstance(question, dict) and question.get("step_index") == step, question

    def question(self, text: str) -> int:
        """Command ``text`` and wait for its exposure question; the event count before it."""
        since = self.g.n_events()
        reply = self.remote.command(text)
        assert reply.accepted, reply
        assert self.remote.wait_for("AWAITING_CONFIRMATION", timeout=30), self.remote.status()
        return since

    def no_shot_since(self, since: int) -> None:
        sent = [e["skill"] for e in self.g.events_of("step_sent", since)]
        assert "take_shot" not in sent, sent


class Attack:
    """One attacker process: the ROS python, the graph's environment, the spec as JSON in argv, results on stdout."""

    def __init__(self, graph: RosGraph, spec: dict[str, Any], log: Path) -> None:
        from medrobot_llm.backends.ros.env import child_env, ros_python

        env = child_env(graph.ros_domain_id)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        self.log = log
        self._err = open(log, "wb")
        self.proc = subprocess.Popen([ros_python(), str(ATTACKER), json.dumps(spec)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, env=env, cwd=ROOT, text=True,
                                     start_new_session=True)
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue
        self.lines.put(None)

    def next(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                obj = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                obj = None
            if obj is None:
                self.lines.put(None)  # every later wait ends at once too
                err = self.log.read_text(errors="replace")[-2000:]
                pytest.fail(f"the attacker gave no {key!r} within {timeout:g} s; its stderr:\n{err}")
            if key in obj:
                return obj

    def ready(self) -> dict[str, Any]:
        return self.next("ready", 40.0)

    def mark(self, label: str, timeout: float = 30.0) -> None:
        got = self.next("mark", timeout)
        assert got["mark"] == label, got

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def results(self, timeout: float = 90.0) -> list[dict[str, Any]]:
        out = self.next("results", timeout)
        for r in out["results"]:
            assert "error" not in r, f"the attacker could not make its attack: {r}"
        return list(out["results"])

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self._err.close()


@contextmanager
def attack(x: Xray, spec: dict[str, Any], tmp: Path) -> Iterator[Attack]:
    a = Attack(x.g, spec, tmp / f"attacker-{time.monotonic_ns()}.log")
    try:
        a.ready()
        yield a
    finally:
        a.close()


def by(results: list[dict[str, Any]], do: str) -> list[dict[str, Any]]:
    return [r for r in results if r["do"] == do]


# ---------------------------------------------------------------------------------------------- the X-ray graph
@pytest.fixture(scope="module")
def xray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Xray]:
    tmp = tmp_path_factory.mktemp("ros_attacks")
    with attack_env(tmp) as robot_tmp, ros_graph("xray", tmp) as g:
        yield Xray(g, robot_tmp)


@pytest.fixture
def x(xray: Xray) -> Xray:
    """The shared graph at rest, whatever ran before."""
    xray.g.at_rest()
    return xray


def test_attack1_a_bare_or_forged_confirmation_and_a_pushed_plan_are_refused(x: Xray, tmp_path: Path) -> None:
    shots, audit = x.exposures(), len(x.records())
    plan = {"status": "ok", "domain": "xray", "steps": [{"skill": "move_to_view", "args": json.loads(SKULL)},
                                                        {"skill": "take_shot", "args": {}}],
            "control": None, "reason": None, "question": None, "needs_confirmation": []}
    pose = x.gantry()
    since = x.g.n_events()
    commands = [{"do": "operator", "topic": COMMAND, "kind": "command", "operator": who, "answers": "$nonce",
                 "body": "lateral of the skull"} for who in (MALLORY, OPERATOR)]
    with attack(x, {"actions": [{"do": "string", "topic": "/medrobot/planned",
                                 "data": json.dumps({"text": "skull lateral and a shot", "plan": plan})},
                                *commands, {"do": "sleep", "seconds": 2.0}]}, tmp_path) as a:
        a.results()
    assert x.remote.status()["state"] == "IDLE", x.remote.status()
    assert not x.g.events_of("step_sent", since), "the pushed plan or a forged command ran"
    assert not moved(pose, x.gantry()), "the pushed plan or a forged command moved the gantry"
    x.assert_untrusted(audit, "command", MALLORY, "unknown_operator")
    x.assert_untrusted(audit, "command", OPERATOR, "bad_signature")

    x.question(SHOT)
    pose = x.gantry()
    forged = [{"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": MALLORY, "answers": "$nonce"},
              {"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": OPERATOR, "answers": "$nonce"},
              {"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": OPERATOR, "answers": "$nonce",
               "key": "garbage"}]
    with attack(x, {"actions": [{"do": "bool", "topic": CONFIRM, "data": True, "apart": True}, *forged,
                                {"do": "sleep", "seconds": 1.5}]}, tmp_path) as a:
        a.results()
    x.assert_still_asking(1)
    x.assert_untrusted(audit, "confirm", MALLORY, "unknown_operator")
    x.assert_untrusted(audit, "confirm", OPERATOR, "bad_signature")
    bad = [r for r in x.records()[audit:] if r.get("kind") == "untrusted" and r.get("op") == "confirm"
           and r.get("code") == "bad_signature"]
    assert len(bad) == 2, bad
    reply = x.remote.deny()
    assert reply.accepted, reply
    assert x.exposures() == shots, "an exposure was taken"
    assert not moved(pose, x.gantry())
    x.no_shot_since(since)


def test_attack2_a_reset_without_an_operator_key_is_refused(x: Xray, tmp_path: Path) -> None:
    reply = x.remote.stop()
    assert reply.accepted, reply
    assert x.g.wait_robot(lambda s: s["halted"], timeout=5), x.g.robot_status()
    audit = len(x.records())
    resets = [{"do": "operator", "topic": RESET, "kind": "reset", "operator": MALLORY, "answers": "$nonce"},
              {"do": "operator", "topic": RESET, "kind": "reset", "operator": OPERATOR, "answers": "$nonce"}]
    with attack(x, {"sniff": [RESET], "actions": [
            {"do": "empty", "topic": RESET, "apart": True}, *resets, {"do": "sleep", "seconds": 1.5},
            {"do": "mark", "label": "forged"},
            # the attacker's own forgery in the operator's name first, then the operator's genuine reset
            {"do": "wait_captured", "topic": RESET, "operator": OPERATOR, "count": 2, "timeout": 30},
            {"do": "mark", "label": "captured"}, {"do": "go"}, {"do": "wait_state", "state": "ESTOP"},
            {"do": "replay", "topic": RESET, "operator": OPERATOR}, {"do": "sleep", "seconds": 1.5},
            {"do": "mark", "label": "replayed"}]}, tmp_path) as a:
        a.mark("forged")
        assert x.remote.status()["state"] == "ESTOP", x.remote.status()
        assert x.g.robot_status()["halted"], x.g.robot_status()
        x.assert_untrusted(audit, "reset", MALLORY, "unknown_operator")
        x.assert_untrusted(audit, "reset", OPERATOR, "bad_signature")
        reply = x.remote.reset()  # the operator's own reset still works, and the attacker records it
        assert reply.accepted, reply
        assert x.g.wait_robot(lambda s: not s["halted"], timeout=5), x.g.robot_status()
        a.mark("captured")
        assert x.remote.stop().accepted
        assert x.g.wait_robot(lambda s: s["halted"], timeout=5), x.g.robot_status()
        a.go()
        a.mark("replayed")
        a.results()
    assert x.remote.status()["state"] == "ESTOP", x.remote.status()
    assert x.g.robot_status()["halted"], x.g.robot_status()
    x.assert_untrusted(audit, "reset", OPERATOR, "replayed", "stale_message")
    assert x.remote.reset().accepted
    assert x.g.wait_robot(lambda s: not s["halted"], timeout=5), x.g.robot_status()


def test_attack3_a_false_estop_from_a_node_named_supervisor_releases_nothing(x: Xray, tmp_path: Path) -> None:
    reply = x.remote.stop()
    assert reply.accepted, reply
    assert x.g.wait_robot(lambda s: s["halted"], timeout=5), x.g.robot_status()
    pose = x.gantry()
    n = len(x.g.status_log)
    with attack(x, {"name": "medrobot_supervisor", "sniff": [HEARTBEAT], "actions": [
            {"do": "bool", "topic": ESTOP, "data": False, "latched": True},
            {"do": "heartbeat", "count": 5, "period": 0.05},  # a release signed with a made-up key
            {"do": "wait_captured", "topic": HEARTBEAT}, {"do": "replay", "topic": HEARTBEAT},  # a genuine beat
            {"do": "sleep", "seconds": 1.5},
            {"do": "goal", "plan_id": "mallory:1", "step_index": 0, "skill": "move_to_view", "args_json": SKULL},
            {"do": "sleep", "seconds": 0.5}]}, tmp_path) as a:
        results = a.results()
    with x.g.lock:
        after = x.g.status_log[n:]
    assert after and all(s["halted"] for s in after), "the robot was released by a false on the e-stop"
    assert x.remote.status()["state"] == "ESTOP", x.remote.status()
    x.assert_goal_refused(by(results, "goal")[0], "no_capability", "halted")
    assert not moved(pose, x.gantry())
    assert x.remote.reset().accepted
    assert x.g.wait_robot(lambda s: not s["halted"], timeout=5), x.g.robot_status()


def test_attack5_a_forged_executing_state_and_a_goal_inside_a_real_run_are_refused(x: Xray, tmp_path: Path) -> None:
    """Also the acceptance case "a goal with a capability for another step": the attacker reads the capability of
    the run's first goal (a second server on the action sees the goal requests) and sends it with a shot."""
    shots = x.exposures()
    shot = {"plan_id": "$plan_id", "step_index": 1, "skill": "take_shot", "args_json": "{}"}
    forge = {"do": "forge_state", "state": "EXECUTING", "plan_id": "$plan_id", "step_index": 1, "skill": "take_shot"}
    with attack(x, {"sniff_goals": True, "actions": [
            {"do": "wait_goal", "count": 1}, {"do": "wait_state", "state": "AWAITING_CONFIRMATION", "awaiting_step": 1},
            forge, {"do": "goal", **shot},
            forge, {"do": "goal", **shot, "capability": "forged"},
            forge, {"do": "goal", **shot, "capability": "captured", "captured": 0},
            {"do": "sleep", "seconds": 0.5}]}, tmp_path) as a:
        since = x.question(SHOT)
        pose = x.gantry()
        results = a.results()
    sniffed = by(results, "wait_goal")[0]
    assert sniffed["found"], "the attacker saw no goal request"
    first = sniffed["goals"][0]
    assert first["skill"] == "move_to_view" and first["capability"], first
    goals = by(results, "goal")
    x.assert_goal_refused(goals[0], "no_capability")
    x.assert_goal_refused(goals[1], "bad_signature")
    x.assert_goal_refused(goals[2], "capability_mismatch")
    x.assert_still_asking(1)
    assert x.remote.deny().accepted
    assert x.exposures() == shots, "an exposure was taken"
    assert not moved(pose, x.gantry())
    x.no_shot_since(since)


def test_attack7_a_yes_sent_while_no_question_showed_confirms_no_later_question(x: Xray, tmp_path: Path) -> None:
    """The console itself refuses a confirmation with no question; a second console that sent one anyway (bound to
    the state it showed, no question) cannot have it count for the question asked later, nor replay it."""
    shots, audit = x.exposures(), len(x.records())
    reply = x.remote.confirm()
    assert not reply.accepted, reply
    with attack(x, {"sniff": [CONFIRM], "actions": [
            {"do": "wait_state", "state": "IDLE"},
            {"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": SECOND, "answers": "$nonce@0",
             "key": "file"},
            {"do": "wait_captured", "topic": CONFIRM, "operator": SECOND}, {"do": "mark", "label": "typed"},
            {"do": "go"},
            {"do": "wait_state", "state": "AWAITING_CONFIRMATION", "awaiting_step": 1},
            {"do": "replay", "topic": CONFIRM, "operator": SECOND},
            {"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": SECOND, "answers": "$nonce@0",
             "key": "file"},
            {"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": SECOND, "answers": "", "key": "file"},
            {"do": "sleep", "seconds": 1.5}]}, tmp_path) as a:
        a.mark("typed")
        since = x.question(SHOT)
        a.go()
        results = a.results()
    assert by(results, "wait_captured")[0]["found"], "the second console's confirmation was not on the graph"
    x.assert_still_asking(1)
    # the replay is refused as replayed when the original's counter was spent; when the original itself arrived after
    # the idle nonce was renewed, it was refused as not_open before its counter counted, and so is its copy (a
    # fresh-clone CI run: three not_open, no replayed). Either way nothing is confirmed (above and below)
    x.assert_untrusted(audit, "confirm", SECOND, "replayed", "not_open")
    not_open = [r for r in x.records()[audit:] if r.get("kind") == "untrusted" and r.get("code") == "not_open"]
    # the two sent on the question; the first, sent while idle, too if the idle nonce was renewed before it arrived
    assert len(not_open) >= 2 and {r["claimed"] for r in not_open} == {SECOND}, not_open
    assert x.remote.deny().accepted
    assert x.exposures() == shots
    x.no_shot_since(since)


def test_a_replayed_confirmation_confirms_nothing_and_the_operators_own_does(x: Xray, tmp_path: Path) -> None:
    shots, audit = x.exposures(), len(x.records())
    with attack(x, {"sniff": [CONFIRM], "actions": [
            {"do": "wait_captured", "topic": CONFIRM, "operator": OPERATOR, "timeout": 60},
            {"do": "replay", "topic": CONFIRM, "operator": OPERATOR},  # at once: inside the window, counter spent
            {"do": "mark", "label": "captured"}, {"do": "go"},
            {"do": "wait_state", "state": "AWAITING_CONFIRMATION", "awaiting_step": 1},
            {"do": "sleep", "seconds": 6.0},  # then outside the window (5 s), on the next question
            {"do": "replay", "topic": CONFIRM, "operator": OPERATOR}, {"do": "sleep", "seconds": 1.0}]}, tmp_path) as a:
        x.question(SHOT)
        reply = x.remote.confirm()
        assert reply.accepted, reply
        assert x.remote.wait_status(lambda s: s["state"] == "IDLE" and "done" in s["reason"], timeout=30), \
            x.remote.status()
        assert x.exposures() == shots + 1, "the operator's confirmed exposure was not taken"
        a.mark("captured")
        since = x.question(OTHER_SHOT)
        a.go()
        results = a.results()
    genuine = by(results, "wait_captured")[0]["captured"][0]
    assert genuine["operator_id"] == OPERATOR and genuine["kind"] == "confirm", genuine
    x.assert_still_asking(1)
    x.assert_untrusted(audit, "confirm", OPERATOR, "replayed")
    x.assert_untrusted(audit, "confirm", OPERATOR, "stale_message")
    assert x.remote.deny().accepted
    assert x.exposures() == shots + 1
    x.no_shot_since(since)


def test_a_confirmation_for_another_question_is_refused(x: Xray, tmp_path: Path) -> None:
    shots, audit = x.exposures(), len(x.records())
    with attack(x, {"actions": [
            {"do": "wait_state", "state": "AWAITING_CONFIRMATION", "awaiting_step": 1, "timeout": 60},
            {"do": "mark", "label": "seen"}, {"do": "go"},
            {"do": "wait_state", "state": "AWAITING_CONFIRMATION", "awaiting_step": 1, "other_than": "$nonce@0"},
            {"do": "operator", "topic": CONFIRM, "kind": "confirm", "operator": SECOND, "answers": "$nonce@0",
             "key": "file"},
            {"do": "sleep", "seconds": 1.5}]}, tmp_path) as a:
        x.question(SHOT)
        a.mark("seen")
        assert x.remote.deny().accepted
        since = x.question(OTHER_SHOT)
        a.go()
        a.results()
    x.assert_still_asking(1)
    x.assert_untrusted(audit, "confirm", SECOND, "not_open")
    assert x.remote.deny().accepted
    assert x.exposures() == shots
    x.no_shot_since(since)


def test_normal_flows_a_stop_from_any_node_and_the_operators_reset(x: Xray, tmp_path: Path) -> None:
    """A console command moves the gantry; a node with no key at all may stop; the operator resets."""
    since = x.g.n_events()
    reply = x.remote.command("lateral of the skull")
    assert reply.accepted, reply
    assert x.remote.wait_status(lambda s: s["state"] == "IDLE" and "done" in s["reason"], timeout=30), \
        x.remote.status()
    assert [e["skill"] for e in x.g.events_of("step_sent", since)] == ["move_to_view"]
    with attack(x, {"actions": [{"do": "bool", "topic": ESTOP, "data": True, "latched": True},
                                {"do": "wait_state", "state": "ESTOP", "timeout": 10}]}, tmp_path) as a:
        stopped = by(a.results(), "wait_state")[0]
    assert stopped["found"], stopped
    assert x.g.wait_robot(lambda s: s["halted"], timeout=5), x.g.robot_status()
    assert x.remote.wait_for("ESTOP", timeout=5), x.remote.status()  # what the operator's console shows
    reply = x.remote.reset()
    assert reply.accepted, reply
    assert x.g.wait_robot(lambda s: not s["halted"], timeout=5), x.g.robot_status()


# ---------------------------------------------------------------------------------------------- a killed supervisor
@pytest.fixture(scope="module")
def orphaned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Xray, list[dict[str, Any]]]]:
    """An X-ray graph whose supervisor was killed with SIGKILL after setting a view (a shot would be admissible
    by the world), and genuine heartbeats an attacker recorded before the kill."""
    tmp = tmp_path_factory.mktemp("ros_attacks_killed")
    # the skill server outlives its supervisor as under `ros2 launch`: bringup would stop the graph with it
    with attack_env(tmp) as robot_tmp, ros_graph("xray", tmp, options=["--on-node-exit", "keep"]) as g:
        xr = Xray(g, robot_tmp)
        reply = g.remote.command("AP of the pelvis")
        assert reply.accepted, reply
        assert g.remote.wait_status(lambda s: s["state"] == "IDLE" and "done" in s["reason"], timeout=30), \
            g.remote.status()
        with attack(xr, {"sniff": [HEARTBEAT], "actions": [{"do": "wait_captured", "topic": HEARTBEAT,
                                                            "count": 3, "timeout": 10}]}, tmp) as a:
            beats = by(a.results(), "wait_captured")[0]["captured"]
        assert len(beats) >= 3, "no supervisor heartbeat on /medrobot/heartbeat"
        os.kill(g.pid("medrobot_supervisor"), signal.SIGKILL)
        time.sleep(2.0)  # twice the skill server's heartbeat window (1 s): a real process's clock, not ours
        yield xr, beats


def test_attack4_after_kill_9_of_the_supervisor_forged_state_beats_and_goals_move_nothing(
        orphaned: tuple[Xray, list[dict[str, Any]]], tmp_path: Path) -> None:
    xr, beats = orphaned
    xr.assert_alive("medrobot_skill_server")
    shots, pose = xr.exposures(), xr.gantry()
    goals = [{"do": "goal", "plan_id": "mallory:1", "step_index": 0, "skill": "move_to_view", "args_json": SKULL},
             {"do": "goal", "plan_id": "mallory:1", "step_index": 1, "skill": "take_shot", "capability": "forged"},
             {"do": "goal", "plan_id": "mallory:1", "step_index": 2, "skill": "take_shot"},
             {"do": "goal", "plan_id": "mallory:1", "step_index": 3, "skill": "acquire_3d", "capability": "forged"}]
    with attack(xr, {"await_state": False, "actions": [
            {"do": "publish_heartbeat", "fields": beats[-1]}, {"do": "heartbeat", "count": 5, "period": 0.05},
            {"do": "forge_state", "state": "EXECUTING", "plan_id": "mallory:1", "step_index": 0,
             "skill": "move_to_view", "session": "mallory"},
            *goals]}, tmp_path) as a:
        results = a.results()
    for r in by(results, "goal"):
        xr.assert_goal_refused(r, "no_heartbeat")
    assert xr.exposures() == shots, "an exposure was taken without a supervisor"
    assert not moved(pose, xr.gantry()), "the gantry moved without a supervisor"


def test_a_goal_after_the_supervisor_was_killed_is_refused(orphaned: tuple[Xray, list[dict[str, Any]]],
                                                          tmp_path: Path) -> None:
    xr, _beats = orphaned
    xr.assert_alive("medrobot_skill_server")
    shots, pose = xr.exposures(), xr.gantry()
    with attack(xr, {"await_state": False, "actions": [
            {"do": "goal", "plan_id": "mallory:2", "step_index": 0, "skill": "take_shot"},
            {"do": "goal", "plan_id": "mallory:2", "step_index": 0, "skill": "move_to_view", "args_json": SKULL,
             "capability": "forged"}]}, tmp_path) as a:
        results = a.results()
    for r in by(results, "goal"):
        xr.assert_goal_refused(r, "no_heartbeat")
    assert xr.exposures() == shots
    assert not moved(pose, xr.gantry())


# ---------------------------------------------------------------------------------------------- a slow planner
#: the supervisor's command window on the slow graph: short, so a late plan is late within a test's patience
WINDOW_S = 3.0


class SlowModel:
    """The scripted OpenAI-compatible model, answering what the rule planner would, but only once ``gate`` is set."""

    def __init__(self) -> None:
        from tests._openai_server import rule_responder

        self.rule = rule_responder()
        self.gate = threading.Event()
        self.gate.set()
        self.asked = 0
        self.answered = 0
        self.answered_at: list[float] = []  # wall clock, as the audit's t_wall
        self.cond = threading.Condition()

    def __call__(self, body: dict[str, Any]) -> Any:
        with self.cond:
            self.asked += 1
            self.cond.notify_all()
        self.gate.wait(25.0)  # below the planner's 30 s request timeout: the answer does come, late
        reply = self.rule(body)
        with self.cond:
            self.answered += 1
            self.answered_at.append(time.time())
            self.cond.notify_all()
        return reply

    def wait(self, pred: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Xray, SlowModel]]:
    from tests._openai_server import ScriptedOpenAIServer

    tmp = tmp_path_factory.mktemp("ros_attacks_slow")
    model = SlowModel()
    with ScriptedOpenAIServer(responder=model) as server, \
            attack_env(tmp, OPENAI_BASE_URL=server.base_url, MEDROBOT_MODEL="scripted-model",
                       OPENAI_API_KEY="scripted") as robot_tmp, \
            ros_graph("xray", tmp, overrides=["medrobot_planner.planner=openai",
                                              f"medrobot_supervisor.command_window_s={WINDOW_S}"]) as g:
        yield Xray(g, robot_tmp), model
    model.gate.set()


@pytest.fixture
def held(slow: tuple[Xray, SlowModel]) -> Iterator[tuple[Xray, SlowModel]]:
    """The slow graph at rest, its model holding every answer until the test lets it go."""
    xr, model = slow
    model.gate.set()
    xr.g.at_rest()
    model.gate.clear()
    try:
        yield xr, model
    finally:
        model.gate.set()


def _let_the_plan_come_back(xr: Xray, model: SlowModel, answered: int) -> dict[str, Any]:
    """Release the model and wait until the supervisor has acted on the late plan: its first audit record after
    the model answered that says so (withdrawn, stale, too late) or that shows it ran (validated, a step sent)."""
    model.gate.set()
    assert model.wait(lambda: model.answered > answered, 30), "the model never answered"
    back = model.answered_at[answered]

    def acted(r: dict[str, Any]) -> bool:
        said = json.dumps(r)
        return r.get("t_wall", 0) >= back and (r.get("kind") in ("plan_discarded", "validation", "run", "step_sent")
                                               or any(w in said for w in ("withdr", "stale_message", "too late")))

    found = xr.wait_record(acted, timeout=10)
    assert found is not None, f"the supervisor recorded nothing of the late plan: {xr.records()[-5:]}"
    return found


def test_attack6_a_command_the_console_gave_up_on_never_moves_anything_later(held: tuple[Xray, SlowModel]) -> None:
    xr, model = held
    pose, since, asked, answered = xr.gantry(), xr.g.n_events(), model.asked, model.answered
    reply = xr.remote.command("lateral of the sacrum", timeout=2.0)
    assert not reply.accepted, reply
    assert model.wait(lambda: model.asked > asked, 10), "the planner never asked the model"
    record = _let_the_plan_come_back(xr, model, answered)
    assert not xr.g.events_of("step_sent", since), "the withdrawn command ran"
    assert xr.remote.status()["state"] == "IDLE", xr.remote.status()
    assert not moved(pose, xr.gantry()), "the gantry moved after the console gave up"
    assert record["kind"] == "plan_discarded", record


def test_attack6_cancel_does_not_wait_behind_a_command_being_planned(held: tuple[Xray, SlowModel]) -> None:
    xr, model = held
    pose, since, asked, answered = xr.gantry(), xr.g.n_events(), model.asked, model.answered
    first: list[Any] = []
    t = threading.Thread(target=lambda: first.append(xr.remote.command("lateral of the sacrum", timeout=20.0)))
    t.start()
    try:
        assert model.wait(lambda: model.asked > asked, 10), "the planner never asked the model"
        t0 = time.monotonic()
        reply = xr.remote.command("cancel", timeout=5.0)
        waited = time.monotonic() - t0
        assert reply.accepted, reply
        assert waited < 3.0, f"cancel waited {waited:.1f} s behind the command being planned"
        record = _let_the_plan_come_back(xr, model, answered)
    finally:
        model.gate.set()
        t.join(30)
    assert first and not first[0].accepted, first
    assert not xr.g.events_of("step_sent", since), "the cancelled command ran"
    assert not moved(pose, xr.gantry())
    assert record["kind"] == "plan_discarded", record


def test_attack6_a_command_planned_after_its_window_is_refused_as_stale(held: tuple[Xray, SlowModel]) -> None:
    xr, model = held
    pose, since, asked, answered = xr.gantry(), xr.g.n_events(), model.asked, model.answered
    first: list[Any] = []
    t = threading.Thread(target=lambda: first.append(xr.remote.command("lateral of the sacrum", timeout=25.0)))
    t.start()
    try:
        assert model.wait(lambda: model.asked > asked, 10), "the planner never asked the model"
        time.sleep(WINDOW_S + 1.0)  # the supervisor's window runs on the wall clock of its own process
        record = _let_the_plan_come_back(xr, model, answered)
    finally:
        model.gate.set()
        t.join(30)
    assert first and not first[0].accepted, first
    assert not xr.g.events_of("step_sent", since), "the stale command ran"
    assert not moved(pose, xr.gantry())
    assert record["kind"] == "plan_discarded", record

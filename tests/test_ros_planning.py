"""The supervisor asks the planner, over real DDS: only the planner's signed answer to that very command acts,
a console that gives up withdraws its command, and its plan, when it finally comes, is dropped (issue 15's
attacks 1 and 6). The supervisor node runs in this process with a stand-in planner whose signing key and
delay the test chooses, on a ROS_DOMAIN_ID of their own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medrobot_llm.safety.events import SupervisorEvent
from tests._ros_helpers import require_ros

pytestmark = [pytest.mark.ros]

SHOT = {"status": "ok", "domain": "xray", "steps": [{"skill": "take_shot", "args": {}}]}


class Planner:
    """A ``/medrobot/plan`` server that signs with ``secret`` (None: not at all) after ``delay_s``."""

    def __init__(self, secret: bytes | None) -> None:
        from medrobot_interfaces.srv import PlanCommand
        from rclpy.callback_groups import ReentrantCallbackGroup

        from medrobot_llm.backends.ros.common import SERVICE_PLAN, NodeRunner
        from medrobot_llm.backends.ros.env import graph_identity

        self.secret = secret
        self.delay_s = 0.0
        self.asked = threading.Event()
        self.answered = threading.Event()
        self.runner = NodeRunner("medrobot_test_planner", threads=4)
        self.graph = graph_identity(self.runner.node.context.get_domain_id())  # as a planner node finds its graph
        self.runner.node.create_service(PlanCommand, SERVICE_PLAN, self._serve, callback_group=ReentrantCallbackGroup())

    def _serve(self, request: Any, response: Any) -> Any:
        from medrobot_llm.safety.planned import sign_answer

        self.asked.set()
        time.sleep(self.delay_s)
        response.status, response.plan_json = "ok", json.dumps(SHOT)
        if self.secret is not None:
            response.signature = sign_answer(self.secret, request_id=request.request_id, domain=request.domain,
                                             text=request.text, status=response.status,
                                             plan_json=response.plan_json, graph=self.graph)
        self.answered.set()
        return response

    def close(self) -> None:
        self.runner.close()


class Rig:
    def __init__(self, keys_dir: Path, planner_secret: bytes | None, with_planner: bool = True) -> None:
        import rclpy
        from rclpy.context import Context

        from medrobot_llm.backends.ros.common import TOPIC_COMMAND, PoolExecutor
        from medrobot_llm.backends.ros.remote import RemoteSupervisor
        from medrobot_llm.backends.ros.supervisor_node import SupervisorNode

        self.context = Context()
        rclpy.init(context=self.context)
        self.node = SupervisorNode(context=self.context, domain="xray", keys_dir=str(keys_dir))
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.node.sup.subscribe(self._on_record)
        self.executor = PoolExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.planner = Planner(planner_secret) if with_planner else None
        self.remote = RemoteSupervisor("medrobot_test_console", operator="tester", keys_dir=keys_dir)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (self.remote.node.count_subscribers(TOPIC_COMMAND)
                                                   and self.remote.status().get("nonce")
                                                   and (not with_planner or self.remote.status().get("planner"))):
            time.sleep(0.02)
        assert self.remote.status().get("nonce"), "the console never heard the supervisor"

    def _on_record(self, event: SupervisorEvent) -> None:
        with self.lock:
            self.records.append(event.record())

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.records if r.get("kind") == kind]

    def close(self) -> None:
        import rclpy

        self.remote.close()
        if self.planner is not None:
            self.planner.close()
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(3.0)
        self.node.close()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture()
def keys_dir(tmp_path: Path) -> Path:
    from medrobot_llm.safety.keys import init_keys

    init_keys(tmp_path / "keys", ["tester"])
    return tmp_path / "keys"


@pytest.fixture()
def domain_id() -> Iterator[None]:
    require_ros()
    from medrobot_llm.backends.ros.env import unique_domain_id

    claim = unique_domain_id()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(claim.domain_id))
        mp.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        try:
            yield
        finally:
            claim.release()


@pytest.mark.parametrize("secret", [None, b"x" * 32])
def test_a_plan_answer_not_signed_with_the_graph_secret_is_refused(domain_id: None, keys_dir: Path,
                                                                   secret: bytes | None) -> None:
    rig = Rig(keys_dir, secret)
    try:
        reply = rig.remote.command("take a shot", timeout=10)
        assert not reply.accepted and "bad_signature" in reply.message, reply
        [untrusted] = rig.kinds("untrusted")
        assert untrusted["op"] == "plan" and untrusted["claimed"] == "tester", untrusted
        assert not rig.kinds("plan") and not rig.kinds("run"), "a forged plan reached the supervisor"
    finally:
        rig.close()


def test_a_command_the_console_gave_up_on_is_withdrawn_and_its_late_plan_dropped(domain_id: None,
                                                                                 keys_dir: Path) -> None:
    from medrobot_llm.safety.keys import load_graph_secret

    rig = Rig(keys_dir, load_graph_secret(keys_dir))
    assert rig.planner is not None
    rig.planner.delay_s = 2.0
    try:
        started = time.monotonic()
        reply = rig.remote.command("take a shot", timeout=0.5)
        assert not reply.accepted and "sent a cancel so it cannot run later (withdrawn)" in reply.message, reply
        # the cancel was answered while the planner was still thinking: it did not queue behind it
        assert time.monotonic() - started < 2.0 and not rig.planner.answered.is_set()
        assert rig.planner.answered.wait(5)
        deadline = time.monotonic() + 3
        while not rig.kinds("plan_discarded") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rig.kinds("plan_discarded"), rig.records
        assert not rig.kinds("run") and rig.node.sup.state.value == "IDLE"
    finally:
        rig.close()


def test_without_a_planner_a_command_is_refused_naming_bringup(domain_id: None, keys_dir: Path) -> None:
    rig = Rig(keys_dir, None, with_planner=False)
    try:
        reply = rig.remote.command("take a shot", timeout=5)
        assert not reply.accepted and "medrobot bringup" in reply.message, reply
    finally:
        rig.close()

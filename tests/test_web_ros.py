"""The web console over a real ROS 2 graph (``medrobot web --ros``): the same hub and app, the client a
``RemoteSupervisor`` signing as the graph's operator. What differs from the in-process session is that the
records arrive over /medrobot/events and the radiograph is the skill server's file; the page must not notice.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from starlette.testclient import TestClient  # noqa: E402

from medrobot_llm.consoles.web.app import Access, create_app  # noqa: E402
from medrobot_llm.consoles.web.hub import WebHub  # noqa: E402
from tests._helpers_supervisor import until  # noqa: E402
from tests._ros_helpers import ros_graph  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.sim, pytest.mark.slow]

BASE = "http://127.0.0.1:8765"


def test_the_page_drives_the_ros_graph_question_by_question(tmp_path: Path) -> None:
    with ros_graph("xray", tmp_path) as graph:
        hub = WebHub(graph.remote, "xray", arming_s=0.0)  # the arming delay is tested in test_web
        seen: list[dict[str, Any]] = []
        hub.add_listener(seen.append)
        hub.start()
        access = Access("127.0.0.1", 8765)
        try:
            http = TestClient(create_app(hub, access), base_url=BASE)
            assert http.get(f"/?token={access.token}", follow_redirects=False).status_code == 303
            resp = http.post("/api/command", json={"text": "lateral of the sacrum and take a shot"})
            assert resp.status_code == 200, resp.text
            assert until(lambda: any(m["type"] == "question" and m["id"] for m in seen), 30), seen[-5:]
            question = next(m for m in seen if m["type"] == "question" and m["id"])
            assert question["hazard"] == "radiation"
            plan = next(m for m in seen if m["type"] == "plan")
            assert [s["skill"] for s in plan["steps"]] == ["move_to_view", "take_shot"]
            assert http.post("/api/confirm", json={"question": "q0", "accept": True, "via": "button"}).status_code == 409
            key = http.post("/api/confirm", json={"question": question["id"], "accept": True, "via": "key"})
            assert key.status_code == 409 and graph.remote.status()["state"] == "AWAITING_CONFIRMATION"
            ok = http.post("/api/confirm", json={"question": question["id"], "accept": True, "via": "button"})
            assert ok.status_code == 200, ok.text
            assert until(lambda: any(m["type"] == "image" and m["kind"] == "radiograph" for m in seen), 30), seen[-5:]
            image = next(m for m in seen if m["type"] == "image" and m["kind"] == "radiograph")
            served = http.get(image["url"])
            assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == image["sha256"]
            assert until(lambda: graph.remote.status()["state"] == "IDLE", 20)
            # the stop over ROS: latched at once, reset by the page
            assert http.post("/api/stop").json()["state"] == "ESTOP"
            assert until(lambda: http.get("/api/status").json()["state"] == "ESTOP", 10)
            reset = http.post("/api/reset")
            assert reset.status_code == 200, reset.text
            assert until(lambda: http.get("/api/status").json()["state"] == "IDLE", 10)
            assert http.post("/api/speech", content=b"RIFF", headers={"content-type": "audio/wav"}).status_code == 503
        finally:
            hub.close()

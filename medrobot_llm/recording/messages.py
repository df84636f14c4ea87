"""What each audit record, feedback sample and image becomes in an MCAP file: a topic, a ROS 2 type, a message.

Standard types carry what viewers can draw (poses, wrenches, joint states, images); the project's interfaces
carry the supervisor's states and the steps as the ROS graph sends them; what has no type of its own (a
command, a plan, a validation, a confirmation) is the record's JSON in a ``std_msgs/String``, as on the graph's
event topic. Records are read tolerantly: a field this module does not know is kept in the JSON and otherwise
ignored, a field it needs and does not find gets the type's empty value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from medrobot_llm.core.jsonable import jsonable
from medrobot_llm.core.paths import data_dir

__all__ = ["Message", "TOPICS", "Topic", "frame_message", "gantry_units", "image_message", "image_topic", "stamp",
           "surgery_arms", "telemetry_messages", "to_json"]


@dataclass(frozen=True)
class Topic:
    name: str
    datatype: str


STRING = "std_msgs/msg/String"
POSE = "geometry_msgs/msg/PoseStamped"
WRENCH = "geometry_msgs/msg/WrenchStamped"
JOINTS = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"

#: the fixed topics of a recording; telemetry and image topics are per domain (``telemetry_messages``, ``image_topic``)
TOPICS: dict[str, Topic] = {
    "records": Topic("/medrobot/log/records", STRING),  # every record, as the audit log has it
    "command": Topic("/medrobot/log/command", STRING),
    "plan": Topic("/medrobot/log/plan", STRING),
    "validation": Topic("/medrobot/log/validation", STRING),
    "question": Topic("/medrobot/log/question", STRING),
    "confirmation": Topic("/medrobot/log/confirmation", STRING),
    "hazard": Topic("/medrobot/log/hazard", STRING),  # an exposure or contact written ahead, then done
    "state": Topic("/medrobot/log/supervisor_state", "medrobot_interfaces/msg/SupervisorState"),
    "goal": Topic("/medrobot/log/step_goal", "medrobot_interfaces/action/ExecuteSkill_Goal"),
    "result": Topic("/medrobot/log/step_result", "medrobot_interfaces/action/ExecuteSkill_Result"),
    "feedback": Topic("/medrobot/log/step_feedback", "medrobot_interfaces/action/ExecuteSkill_Feedback"),
    "frame": Topic("/scene/frame/compressed", COMPRESSED),
}

#: (topic, message) with the message as the dict mcap-ros2-support encodes
Message = tuple[Topic, dict[str, Any]]


def to_json(value: Any) -> str:
    return json.dumps(value, default=jsonable, ensure_ascii=False, separators=(",", ":"))


def stamp(t_ns: int) -> dict[str, int]:
    return {"sec": t_ns // 1_000_000_000, "nanosec": t_ns % 1_000_000_000}


def _header(t_ns: int, frame_id: str) -> dict[str, Any]:
    return {"stamp": stamp(t_ns), "frame_id": frame_id}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _point(value: Any, scale: float) -> dict[str, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    xyz = [_number(v) for v in value]
    if any(v is None for v in xyz):
        return None
    return {"x": float(xyz[0] or 0.0) * scale, "y": float(xyz[1] or 0.0) * scale, "z": float(xyz[2] or 0.0) * scale}


def _pose(topic: str, position: dict[str, float], t_ns: int) -> Message:
    # telemetry reports where a tool is, not how it is turned: the orientation is the identity
    pose = {"position": position, "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}
    return Topic(topic, POSE), {"header": _header(t_ns, "world"), "pose": pose}


def _wrench(topic: str, frame: str, force_n: float, t_ns: int) -> Message:
    # the scenes measure the contact force along the tool's axis only: its magnitude is z in the tool's frame
    zero = {"x": 0.0, "y": 0.0, "z": 0.0}
    return Topic(topic, WRENCH), {"header": _header(t_ns, frame),
                                  "wrench": {"force": {**zero, "z": force_n}, "torque": zero}}


@cache
def _scene_spec(domain: str) -> Mapping[str, Any]:
    folder = data_dir("sim", f"{domain}/scene.yaml")
    if folder is None:
        return {}
    spec = yaml.safe_load((folder / domain / "scene.yaml").read_text(encoding="utf-8"))
    return spec if isinstance(spec, Mapping) else {}


def gantry_units() -> dict[str, str]:
    """The X-ray gantry's axes and their units (``mm`` or ``deg``), as its scene file states them."""
    axes = (_scene_spec("xray").get("gantry") or {}).get("axes") or {}
    return {str(k): str(v.get("unit", "")) for k, v in axes.items() if isinstance(v, Mapping)}


def surgery_arms() -> list[str]:
    """The surgery scene's instrument arms, as its scene file names them (each has a remote centre of motion)."""
    arms = _scene_spec("surgery").get("arms") or {}
    return [str(k) for k, v in arms.items() if isinstance(v, Mapping) and "rcm" in v]


#: JointState wants metres and radians
_SI = {"mm": 0.001, "deg": math.pi / 180.0}


def telemetry_messages(domain: str, data: Mapping[str, Any], t_ns: int) -> list[Message]:
    """Poses, forces and gantry angles found in a feedback sample's telemetry or a step's outcome.

    The scenes report the probe's position as ``tip`` (metres) or ``tip_mm``, the surgical arms' tool tips as
    ``<arm>_mm`` (feedback) or ``arm`` and ``tcp_mm`` (a step's outcome), the contact force as ``force_n`` and the
    gantry's axes at the top level (feedback) or under ``axes`` (a step's outcome).
    """
    out: list[Message] = []
    units = gantry_units() if domain == "xray" else {}
    nested = data.get("axes")
    axes: Mapping[str, Any] = nested if isinstance(nested, Mapping) else data
    joints = [(name, _number(axes.get(name))) for name in units]
    known = [(name, value * _SI.get(units[name], 1.0)) for name, value in joints if value is not None]
    if known:
        out.append((Topic(f"/{domain}/gantry/joint_states", JOINTS),
                    {"header": _header(t_ns, "gantry"), "name": [n for n, _ in known],
                     "position": [v for _, v in known], "velocity": [], "effort": []}))
    tool = "probe" if domain == "ultrasound" else "tool"
    tip = _point(data.get("tip"), 1.0) or _point(data.get("tip_mm"), 0.001)
    if tip is not None:
        out.append(_pose(f"/{domain}/{tool}/pose", tip, t_ns))
    arms = surgery_arms() if domain == "surgery" else []
    tcps = {arm: data.get(f"{arm}_mm") for arm in arms}  # feedback: every arm's tool tip
    if data.get("arm") in arms:
        tcps[str(data["arm"])] = data.get("tcp_mm")  # a step's outcome: the arm it moved
    for arm, value in tcps.items():
        point = _point(value, 0.001)
        if point is not None:
            out.append(_pose(f"/{domain}/{arm}/pose", point, t_ns))
    force = _number(data.get("force_n"))
    if force is not None:
        out.append(_wrench(f"/{domain}/{tool}/wrench", f"{tool}_tip", force, t_ns))
    return out


def image_topic(domain: str) -> Topic:
    """Where a step's saved picture goes: a radiograph, a B-mode capture, another scene's picture."""
    name = {"xray": "/xray/radiograph", "ultrasound": "/ultrasound/bmode"}.get(domain, f"/{domain}/image")
    return Topic(name, IMAGE)


#: PIL's modes as ROS image encodings (sensor_msgs/image_encodings.hpp), with bytes per pixel
_ENCODINGS = {"L": ("mono8", 1), "RGB": ("rgb8", 3), "RGBA": ("rgba8", 4), "I;16": ("mono16", 2)}


def image_message(path: Path, t_ns: int, frame_id: str) -> dict[str, Any]:
    """The picture's pixels as they are in the PNG: no scaling, no conversion beyond a palette's expansion."""
    from PIL import Image

    with Image.open(path) as opened:
        img = opened if opened.mode in _ENCODINGS else opened.convert("RGBA" if "A" in opened.getbands() else "RGB")
        encoding, size = _ENCODINGS[img.mode]
        data = img.tobytes()
        width, height = img.size
    return {"header": _header(t_ns, frame_id), "height": height, "width": width, "encoding": encoding,
            "is_bigendian": 0, "step": width * size, "data": data}


def frame_message(path: Path, t_ns: int) -> dict[str, Any]:
    """A rendered scene frame, as its PNG file's bytes (viewers decode PNG themselves)."""
    return {"header": _header(t_ns, "scene_camera"), "format": "png", "data": path.read_bytes()}


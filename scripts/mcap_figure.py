"""Draw docs/img/mcap_run.png from MCAP recordings, using only what a viewer would read from the files.

Records an X-ray shot and an ultrasound scan with ``medrobot run --mcap`` (or takes ``--xray``/``--ultrasound``
files), decodes every message with mcap-ros2-support, and plots the radiograph and the B-mode capture as the
files hold them, next to the recorded telemetry: the gantry's axes and the probe's contact force and height,
with the step goals and supervisor states on the same time axis.

    python3 scripts/mcap_figure.py --out docs/img/mcap_run.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mcap.reader import make_reader  # noqa: E402
from mcap_ros2.decoder import DecoderFactory  # noqa: E402

from medrobot_llm.recording.messages import gantry_units  # noqa: E402
from medrobot_llm.safety.machine import SupervisorState  # noqa: E402

RUNS = {"xray": "lateral of the sacrum and take a shot", "ultrasound": "scan the left kidney and capture"}


def record(domain: str, folder: Path) -> Path:
    out = folder / f"{domain}.mcap"
    subprocess.run([sys.executable, "-m", "medrobot_llm.cli", "run", "--domain", domain, "--yes", "--record",
                    str(folder / domain), "--mcap", str(out), RUNS[domain]], check=True, capture_output=True)
    return out


def decode(path: Path) -> dict[str, list[tuple[float, Any]]]:
    """Every message by topic, as (seconds since the first message, decoded message)."""
    topics: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    with path.open("rb") as f:
        for _, channel, message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            topics[channel.topic].append((message.log_time, decoded))
    t0 = min(t for msgs in topics.values() for t, _ in msgs)
    return {k: [((t - t0) / 1e9, m) for t, m in v] for k, v in topics.items()}


def image(msg: Any) -> np.ndarray:
    channels = {"mono8": 1, "rgb8": 3}[msg.encoding]
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, channels).squeeze()


def mark_steps(ax: Any, topics: dict[str, list[tuple[float, Any]]]) -> None:
    for t, goal in topics.get("/medrobot/log/step_goal", []):
        ax.axvline(t, color="0.6", lw=0.8, ls="--")
        ax.text(t, 1.0, f" {goal.skill}", transform=ax.get_xaxis_transform(), fontsize=7, va="top", rotation=90)
    for t, state in topics.get("/medrobot/log/supervisor_state", []):
        if state.state == SupervisorState.AWAITING_CONFIRMATION.value:
            ax.axvspan(t, t + 0.01, color="tab:orange", alpha=0.6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xray", type=Path)
    ap.add_argument("--ultrasound", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/img/mcap_run.png"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        xray = decode(args.xray or record("xray", Path(tmp)))
        us = decode(args.ultrasound or record("ultrasound", Path(tmp)))
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), gridspec_kw={"width_ratios": [1, 2.2]})
    (_, shot), = xray["/xray/radiograph"]
    axes[0, 0].imshow(image(shot), cmap="gray")
    axes[0, 0].set_title("/xray/radiograph (sensor_msgs/Image)", fontsize=9)
    (_, bmode), = us["/ultrasound/bmode"]
    axes[1, 0].imshow(image(bmode), cmap="gray")
    axes[1, 0].set_title("/ultrasound/bmode (sensor_msgs/Image)", fontsize=9)
    for ax in axes[:, 0]:
        ax.set_xticks([])
        ax.set_yticks([])

    ax = axes[0, 1]
    joints = xray["/xray/gantry/joint_states"]
    for i, name in enumerate(joints[0][1].name):
        unit = gantry_units()[name]
        scale = np.degrees(1.0) if unit == "deg" else 1000.0
        ax.plot([t for t, _ in joints], [m.position[i] * scale for _, m in joints], label=f"{name} ({unit})")
    mark_steps(ax, xray)
    ax.set_title("/xray/gantry/joint_states (sensor_msgs/JointState)", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="center right")

    ax = axes[1, 1]
    wrench = us["/ultrasound/probe/wrench"]
    pose = us["/ultrasound/probe/pose"]
    ax.plot([t for t, _ in wrench], [m.wrench.force.z for _, m in wrench], color="tab:red", label="contact force (N)")
    ax.set_ylabel("force (N)")
    twin = ax.twinx()
    twin.plot([t for t, _ in pose], [m.pose.position.z * 1000 for _, m in pose], color="tab:blue",
              label="probe tip height (mm)")
    twin.set_ylabel("tip z (mm)")
    mark_steps(ax, us)
    ax.set_title("/ultrasound/probe/wrench, /ultrasound/probe/pose (geometry_msgs)", fontsize=9)
    ax.set_xlabel("log time (s from the first record)")
    fig.legend(*[sum(x, []) for x in zip(ax.get_legend_handles_labels(), twin.get_legend_handles_labels())],
               loc="lower right", fontsize=7)
    fig.suptitle("Two runs decoded from their MCAP files (dashed: step goals, orange: confirmation asked)",
                 fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Skill files: they load, they hold exactly the v1 command set, and a broken one fails loudly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medrobot_llm import DOMAINS, Hazard, SkillFileError, load_command_set
from medrobot_llm.core.command_set import parse_command_set

V1 = {
    "surgery": {"locate", "move_to", "grasp", "release", "lift", "handover", "retract", "insert", "home"},
    "ultrasound": {"move_to_window", "make_contact", "set_force", "sweep", "fan", "rotate_probe", "tilt_probe",
                   "set_imaging", "capture", "lift_probe", "home"},
    "xray": {"move_to_view", "adjust", "collimate", "take_shot", "acquire_3d", "highlight", "park"},
}
HAZARDOUS = {"retract", "insert", "make_contact", "set_force", "take_shot", "acquire_3d"}


@pytest.mark.parametrize("domain", DOMAINS)
def test_v1_command_set(domain: str) -> None:
    cs = load_command_set(domain)
    assert set(cs.skills) == V1[domain]
    assert {n for n, s in cs.skills.items() if s.hazard.needs_confirmation} == HAZARDOUS & V1[domain]
    for skill in cs.skills.values():
        assert skill.summary and skill.synonyms


def test_ranges_of_the_design() -> None:
    su, us, xr = (load_command_set(d) for d in DOMAINS)
    assert (su.skills["lift"].args["height_mm"].min, su.skills["lift"].args["height_mm"].max) == (1, 50)
    assert su.skills["insert"].args["depth_mm"].max == 15
    assert us.skills["make_contact"].args["force_n"].default == 8
    assert xr.entities["axis"].values["orbit"].max == 180
    assert xr.max_exposures == 5
    assert us.skills["capture"].hazard is Hazard.NONE


BROKEN = [
    ("hazard: sharp", "skills.x.hazard"),
    ("args: {a: {type: number, min: 5, max: 1}}", "min 5"),
    ("args: {a: {type: enum, entity: nowhere}}", "unknown entity"),
    ("preconditions: ['holding is full']", "preconditions"),
    ("args: {a: {type: number, min: 1, max: 5, default: 9}}", "default 9"),
    ("args: {a: {type: number}}", "min"),
    ("colour: red", "colour"),
]


@pytest.mark.parametrize(("body", "needle"), BROKEN)
def test_malformed_file_names_file_and_field(body: str, needle: str) -> None:
    text = ("domain: surgery\nversion: 1\ntitle: t\nentities: {e: {values: {v: {}}}}\n"
            "skills:\n  x:\n    summary: s\n    hazard: none\n")
    text += "".join(f"    {line}\n" for line in body.splitlines())
    with pytest.raises(SkillFileError) as err:
        parse_command_set(text, "bad.yaml")
    assert "bad.yaml" in str(err.value) and needle in str(err.value)


def test_not_yaml() -> None:
    with pytest.raises(SkillFileError, match="bad.yaml: not valid YAML"):
        parse_command_set("skills: [unclosed", "bad.yaml")


def test_skills_dir_override(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parent.parent / "skills"
    for f in src.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text().replace("max: 50, default: 20, summary: lift height",
                                                             "max: 50, default: 99, summary: lift height"))
    code = "from medrobot_llm import load_command_set; load_command_set('surgery')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"MEDROBOT_SKILLS_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "surgery.yaml" in proc.stderr and "skills.lift.args.height_mm" in proc.stderr


def test_import_needs_neither_rclpy_nor_pybullet_nor_openai() -> None:
    code = ("import sys, medrobot_llm, medrobot_llm.cli; medrobot_llm.cli.build_parser();"
            "bad = [m for m in ('rclpy', 'pybullet', 'openai') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

"""ROS 2 message definitions as MCAP's ``ros2msg`` schema text: a type's ``.msg`` followed by every type it uses.

A viewer decodes a message with nothing but the schema written into the file, so the text must be the one the
type really has. It is read from a ROS install when one is on ``AMENT_PREFIX_PATH``, else from the project's own
interface sources (``ros_ws/src/medrobot_interfaces``, copied into a wheel) or the standard messages shipped in
``msg/`` beside this module: each definition lives in one file, never typed into code.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

from medrobot_llm.core.paths import data_dir

__all__ = ["MessageDefinitionError", "msgdef"]

#: what separates the definitions in a ros2msg schema (what rosbag2 writes)
SEPARATOR = "=" * 80
#: field types that name no other definition (``string<=N`` and ``wstring`` included after stripping bounds)
PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                        "uint32", "int64", "uint64", "string", "wstring"})
#: the sections of an ``.action`` file, in order, and the message each becomes
ACTION_PARTS = ("Goal", "Result", "Feedback")

_SHIPPED = Path(__file__).resolve().parent / "msg"
_INTERFACES = "ros_ws/src/medrobot_interfaces"


class MessageDefinitionError(LookupError):
    """A type whose ``.msg`` (or ``.action``) is nowhere this machine can read."""


def msgdef(datatype: str) -> str:
    """The full schema text of ``datatype`` (``pkg/msg/Name`` or ``pkg/action/Name_Goal`` and the like)."""
    pkg, kind, name = _split(datatype)
    parts = [_text(pkg, kind, name)]
    seen = {f"{pkg}/{name}"}
    for dep in _dependencies(pkg, kind, name, seen):
        dpkg, _, dname = _split(dep)
        parts.append(f"{SEPARATOR}\nMSG: {dpkg}/{dname}\n{_text(dpkg, 'msg', dname)}")
    return "\n".join(parts)


def _split(datatype: str) -> tuple[str, str, str]:
    pieces = datatype.split("/")
    if len(pieces) == 2:
        return pieces[0], "msg", pieces[1]
    if len(pieces) == 3 and pieces[1] in ("msg", "action"):
        return pieces[0], pieces[1], pieces[2]
    raise MessageDefinitionError(f"{datatype!r} is not a ROS 2 type name (pkg/msg/Name)")


def _dependencies(pkg: str, kind: str, name: str, seen: set[str]) -> list[str]:
    """Every type ``pkg/name`` uses, depth first, each once (the order rosbag2 writes them in)."""
    out: list[str] = []
    for field_type in _field_types(_text(pkg, kind, name)):
        base = re.sub(r"<=\d+$", "", re.sub(r"\[[^\]]*\]$", "", field_type))
        if base in PRIMITIVES:
            continue
        if "/" in base:
            dep_pkg, dep_name = base.split("/")[0], base.split("/")[-1]
        elif base == "Header":
            dep_pkg, dep_name = "std_msgs", "Header"
        else:
            dep_pkg, dep_name = pkg, base
        key = f"{dep_pkg}/{dep_name}"
        if key in seen:
            continue
        seen.add(key)
        out.append(f"{dep_pkg}/msg/{dep_name}")
        out += _dependencies(dep_pkg, "msg", dep_name, seen)
    return out


def _field_types(text: str) -> list[str]:
    types = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and "=" not in line:  # not blank, a comment or a constant (``uint8 MONO=0``)
            types.append(line.split()[0])
    return types


@cache
def _text(pkg: str, kind: str, name: str) -> str:
    if kind == "action":
        base, _, part = name.rpartition("_")
        if part not in ACTION_PARTS:
            raise MessageDefinitionError(f"{pkg}/action/{name}: an action's messages end in _Goal, _Result or _Feedback")
        sections = re.split(r"^---\s*$", _read(pkg, "action", base), flags=re.MULTILINE)
        if len(sections) != len(ACTION_PARTS):
            raise MessageDefinitionError(f"{pkg}/action/{base}.action does not have three sections")
        return sections[ACTION_PARTS.index(part)].strip("\n") + "\n"
    return _read(pkg, "msg", name)


def _read(pkg: str, kind: str, name: str) -> str:
    for folder in _folders(pkg):
        path = folder / kind / f"{name}.{kind}"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        shipped = folder / f"{name}.{kind}"  # the shipped copies sit one folder per package, no msg/ level
        if folder.parent == _SHIPPED and shipped.is_file():
            return shipped.read_text(encoding="utf-8")
    raise MessageDefinitionError(f"no definition of {pkg}/{kind}/{name} (no ROS install has it and none is shipped)")


def _folders(pkg: str) -> list[Path]:
    found = [Path(prefix) / "share" / pkg for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
             if prefix]
    if pkg == "medrobot_interfaces":
        source = data_dir(_INTERFACES)
        if source is not None:
            found.append(source)
    found.append(_SHIPPED / pkg)
    return found

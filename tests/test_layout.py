"""The package layout is the architecture (docs/architecture.md): these tests keep it from eroding.

A dependency that points the wrong way (the core importing a console, a backend importing the CLI) or a
private name reached into from another package is how a layout stops saying anything; both are checked on
the source, lazy imports included, since a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "medrobot_llm"

#: what each part may import, as dotted prefixes below ``medrobot_llm`` (its own part is always allowed);
#: the table in docs/architecture.md says the same in words
ALLOWED: dict[str, tuple[str, ...]] = {
    "core": (),
    "language": ("core",),
    "planning": ("core", "language", "safety.audit"),
    "safety": ("core", "planning.base", "backends.base"),
    "backends": ("core", "language", "planning", "safety", "recording"),
    "session": ("core", "planning", "safety", "backends"),
    "consoles": ("core", "language", "planning", "safety", "session"),
    "bench": ("core", "planning", "safety", "backends", "session"),
    "recording": ("core", "safety"),
    "cli": ("core", "language", "planning", "safety", "backends", "session", "consoles", "bench", "recording"),
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module below medrobot_llm, imported names, line) for every import of ours in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "medrobot_llm" or node.module.startswith("medrobot_llm."):
                out.append((node.module.removeprefix("medrobot_llm").lstrip("."), [a.name for a in node.names],
                            node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("medrobot_llm."):
                    out.append((alias.name.removeprefix("medrobot_llm."), [], node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.append(("<relative>", [a.name for a in node.names], node.lineno))
    return out


def _part(module: str) -> str:
    return module.split(".")[0]


def _allowed(source: str, target: str) -> bool:
    if source == "" or _part(target) == _part(source):
        return True
    rules = ALLOWED[_part(source)]
    return any(target == r or target.startswith(r + ".") for r in rules)


def test_every_part_of_the_package_has_a_rule():
    parts = {_part(m) for m, _ in _modules() if m}
    assert parts == set(ALLOWED), "a new subpackage needs its row in ALLOWED and in docs/architecture.md"


def test_dependencies_point_the_way_the_architecture_says():
    wrong = [f"{m or 'medrobot_llm'}:{line} imports {t}"
             for m, path in _modules() for t, _, line in _imports(path)
             if t == "<relative>" or (t and not _allowed(m, t))]
    assert not wrong, "imports against docs/architecture.md (relative imports are not used):\n" + "\n".join(wrong)


def test_no_private_name_is_imported_across_parts():
    wrong = [f"{m}:{line} imports {n} from {t}"
             for m, path in _modules() for t, names, line in _imports(path)
             for n in names if n.startswith("_") and not n.startswith("__") and _part(t) != _part(m)]
    assert not wrong, "private names used across subpackages (make them public or move them):\n" + "\n".join(wrong)


@pytest.mark.parametrize("heavy", ["rclpy", "pybullet", "openai", "prompt_toolkit", "pocketsphinx", "matplotlib",
                                   "mcap", "mcap_ros2"])
def test_importing_the_package_stays_light(heavy):
    code = f"import sys, medrobot_llm, medrobot_llm.cli; sys.exit(1 if {heavy!r} in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0, f"import pulled in {heavy}"


#: issue 14's aims, with a little room: a module or class past these has grown more than one job
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 420


def test_modules_and_classes_stay_within_the_size_aims():
    big = []
    for module, path in _modules():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_MODULE_LINES:
            big.append(f"module {module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    big.append(f"class {module}.{node.name}: {length} lines")
    assert not big, "split along its jobs:\n" + "\n".join(big)

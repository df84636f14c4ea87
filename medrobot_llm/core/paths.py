"""Where the package finds the files that live beside it: one answer, so a moved module cannot look elsewhere.

In a source checkout the data folders (``skills/``, ``sim/``) and the tooling folders (``benchmarks/``,
``docs/``, ``ros_ws/``) sit next to the package; a wheel carries copies of the data folders in ``_data/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["PACKAGE_DIR", "SOURCE_ROOT", "data_dir", "file_sha256"]

#: the ``medrobot_llm`` package folder
PACKAGE_DIR = Path(__file__).resolve().parent.parent
#: the folder holding the package: the checkout's root in a source tree (site-packages in a wheel install)
SOURCE_ROOT = PACKAGE_DIR.parent


def data_dir(name: str, marker: str | None = None) -> Path | None:
    """The checkout's ``name/`` folder, else the wheel's ``_data/name``; ``marker`` is a file it must hold."""
    for candidate in (SOURCE_ROOT / name, PACKAGE_DIR / "_data" / name):
        if candidate.is_dir() and (marker is None or (candidate / marker).is_file()):
            return candidate
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes: how a log names the exact image it points at."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

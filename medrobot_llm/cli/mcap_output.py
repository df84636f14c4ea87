"""What ``run --mcap`` and ``log export --mcap`` share: the errors a user's path or install can cause, and the report.

Either command needs the ``mcap`` extra; without it, or with a path that cannot be written, the answer is one
sentence and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from medrobot_llm.recording.msgdefs import MessageDefinitionError

if TYPE_CHECKING:
    from medrobot_llm.recording.export import ExportSummary

__all__ = ["MCAP_ERRORS", "mcap_error", "report_export"]

#: the modules the mcap extra brings (pillow decodes the pictures)
EXTRA_MODULES = ("mcap", "mcap_ros2", "PIL")
#: what writing an MCAP file may raise because of the user's path or install
MCAP_ERRORS: tuple[type[BaseException], ...] = (OSError, ModuleNotFoundError, MessageDefinitionError)


def mcap_error(command: str, exc: BaseException) -> str:
    """The sentence for one of ``MCAP_ERRORS``; a missing module that is not the extra's is a bug, raised again."""
    if isinstance(exc, ModuleNotFoundError):
        if (exc.name or "").split(".")[0] not in EXTRA_MODULES:
            raise exc
        return (f"medrobot {command}: --mcap needs the mcap extra ({exc.name} is not installed): "
                "pip install 'medrobot_llm[mcap]'")
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"medrobot {command}: cannot write the MCAP file{where}: {exc.strerror or exc}"
    return f"medrobot {command}: {exc}"


def report_export(summary: ExportSummary, *, as_json: bool, problems: list[str] | None = None) -> None:
    """The topics and their counts for people, or one JSON object; a picture the log names but nobody kept is said."""
    if as_json:
        print(json.dumps({**summary.to_json(), "problems": problems or []}, ensure_ascii=False))
        return
    print(f"wrote {sum(summary.messages.values())} message(s) on {len(summary.messages)} topic(s) to {summary.path}")
    for topic, count in sorted(summary.messages.items()):
        print(f"  {topic}: {count}")
    for missing in summary.missing:
        print(f"!! image not found: {missing}")
    for changed in summary.changed:
        print(f"!! image left out, its bytes are not the ones the log hashed: {changed}")
    for problem in problems or []:
        print(f"!! {problem}")

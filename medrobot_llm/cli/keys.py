"""``medrobot keys``: create and list the graph secret and the operator keys (docs/trust.md).

Nodes and consoles are given the folder by path; this command is the one place that writes it, so the file
modes and the never-overwrite rule are the same for everyone. Keys are never printed, only fingerprints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    from medrobot_llm.safety.keys import KEYS_ENV

    p = sub.add_parser("keys", help="create or list the graph secret and operator keys",
                       description="The keys that authenticate goals, heartbeats and operator messages on the ROS "
                       "graph (docs/trust.md). Files are 0600 in a 0700 folder.")
    inner = p.add_subparsers(dest="keys_command", metavar="ACTION")
    where = (f"the key folder (default: ${KEYS_ENV}, else ~/.config/medrobot/keys)")
    init = inner.add_parser("init", help="create the graph secret and operator keys that are missing",
                            description="Create the graph secret and one key per --operator (default: your login "
                            "name). Existing keys are kept, never overwritten, unless --force.")
    init.add_argument("--dir", type=Path, help=where)
    init.add_argument("--operator", action="append", metavar="NAME",
                      help="an operator identity to create a key for (repeatable)")
    init.add_argument("--force", action="store_true",
                      help="replace existing keys (every node and console then needs the new ones)")
    init.add_argument("--json", action="store_true", help="print one JSON object")
    init.set_defaults(func=_init)
    ls = inner.add_parser("list", help="list the keys with their fingerprints and any problem",
                          description="List the graph secret, operator keys and graph id files (which running "
                          "bringup holds each); exit 1 if one is missing or unusable.")
    ls.add_argument("--dir", type=Path, help=where)
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    ls.set_defaults(func=_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _report(folder: Path, infos: list[Any], as_json: bool) -> int:
    bad = [i for i in infos if i.problem]
    if as_json:
        print(json.dumps({"dir": str(folder), "ok": not bad, "keys": [i.to_json() for i in infos]}))
    else:
        for i in infos:
            label = f"{i.kind} {i.name}" if i.kind != i.name else i.kind
            state = f"PROBLEM: {i.problem}" if i.problem else i.state or f"fingerprint {i.fingerprint}"
            print(f"{(i.action + ' ') if i.action else ''}{label}: {i.path} ({state})")
    return 1 if bad else 0


def _fail(what: str, message: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    else:
        print(f"medrobot keys {what}: {message}", file=sys.stderr)
    return 1


def _init(args: argparse.Namespace) -> int:
    from medrobot_llm.safety.keys import KeyFileError, default_dir, default_operator, init_keys

    folder = args.dir or default_dir()
    try:
        infos = init_keys(folder, args.operator or [default_operator()], force=args.force)
    except (KeyFileError, ValueError) as exc:
        return _fail("init", str(exc), args.json)
    except OSError as exc:
        return _fail("init", f"{exc.filename or folder}: {exc.strerror or exc}", args.json)
    return _report(folder, infos, args.json)


def _list(args: argparse.Namespace) -> int:
    from medrobot_llm.safety.graph_id import list_graph_files
    from medrobot_llm.safety.keys import KeyFileError, KeyInfo, check_folder, default_dir, list_keys

    folder = args.dir or default_dir()
    if not folder.is_dir():
        return _fail("list", f"{folder}: no such key folder; run `medrobot keys init`", args.json)
    try:
        check_folder(folder)
        ours: list[KeyInfo] = []
    except KeyFileError as exc:  # every file below says so too; the folder's own line says the chmod once
        ours = [KeyInfo("folder", "folder", str(folder), problem=str(exc))]
    return _report(folder, ours + list_keys(folder) + list_graph_files(folder), args.json)

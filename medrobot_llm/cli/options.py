"""Command-line options that several sub-commands share, built from the command set.

The domains are a fact of ``skills/`` (``core.command_set.DOMAINS``); a ``choices=`` tuple or a help
sentence typed into each sub-command would go stale the day a domain is added, so they all come from here.
"""

from __future__ import annotations

import argparse

from medrobot_llm.core.command_set import DOMAINS

__all__ = ["add_domain_argument", "domain_names"]


def domain_names(last: str = "or") -> str:
    """The domains as prose for help and error text (``a, b or c``)."""
    *head, tail = DOMAINS
    return f"{', '.join(head)} {last} {tail}" if head else tail


def add_domain_argument(parser: argparse.ArgumentParser, *flags: str, required: bool = True,
                        help: str | None = None) -> None:
    """``--domain`` (plus ``flags``, e.g. ``-d``), restricted to the command set's domains."""
    parser.add_argument("--domain", *flags, required=required, choices=DOMAINS, help=help)

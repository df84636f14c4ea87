"""JSGF text: alternatives, named rules with identical bodies shared, and the grammar file itself."""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "RuleBook",
    "jsgf_words",
    "one_of",
    "write_jsgf",
]


def one_of(phrases: list[str]) -> str:
    return " | ".join(phrases)


class RuleBook:
    """JSGF rules under construction, with identical bodies shared under one name."""

    def __init__(self) -> None:
        self.bodies: dict[str, str] = {}
        self._by_body: dict[str, str] = {}

    def add(self, name: str, alternatives: list[str]) -> str:
        """A rule of ``alternatives`` (spoken phrases or expansions); returns its reference, "" if empty."""
        alts = [a for a in dict.fromkeys(alternatives) if a]
        if not alts:
            return ""
        body = one_of(alts)
        if body in self._by_body:
            return self._by_body[body]
        rule = re.sub(r"[^a-z0-9_]", "_", name.lower())
        k = 2
        base = rule
        while rule in self.bodies:
            rule, k = f"{base}_{k}", k + 1
        self.bodies[rule] = body
        self._by_body[body] = f"<{rule}>"
        return f"<{rule}>"


def write_jsgf(domain: str, top: str, bodies: dict[str, str]) -> str:
    """The grammar file pocketsphinx reads: the public utterance rule, then every named rule in order."""
    body = [
        "#JSGF V1.0;",
        "",
        f"// Generated from skills/{domain}.yaml by medrobot_llm.consoles.voice.grammar; do not edit.",
        f"grammar medrobot_{domain};",
        "",
        f"public <utterance> = {top};",
        "",
        *(f"<{name}> = {expansion};" for name, expansion in bodies.items()),
    ]
    return "\n".join(body) + "\n"


def jsgf_words(expansions: Iterable[str]) -> set[str]:
    """The spoken words of rule expansions: everything but rule references, weights and operators."""
    words: set[str] = set()
    for expansion in expansions:
        words.update(re.findall(r"(?<![<\w'])[a-z][a-z0-9']*(?![\w'>])", re.sub(r"<[^>]*>", " ", expansion)))
    return words

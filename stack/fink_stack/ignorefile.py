""".dockerignore rules, read the way Docker reads them, for the local builder's COPY.

Docker looks for `<Containerfile>.dockerignore` beside the Containerfile (then
`.dockerignore` at the context root) and leaves matching paths out of the build
context. The local builder applies the same file, so a COPY sends the same
files in both builds: patterns are relative to the context root, `*` and `?`
stay within one path element, `**` spans any number of them, a leading `!`
re-includes, the last matching pattern wins, and excluding a directory
excludes everything below it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    include: bool  # a `!` pattern


def _element(part: str) -> str:
    out = ""
    index = 0
    while index < len(part):
        char = part[index]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[":
            end = part.find("]", index + 1)
            if end == -1:
                out += re.escape(char)
            else:
                body = part[index + 1 : end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                index = end
        elif char == "\\" and index + 1 < len(part):
            index += 1
            out += re.escape(part[index])
        else:
            out += re.escape(char)
        index += 1
    return out


def compile_pattern(pattern: str) -> re.Pattern[str]:
    parts = [p for p in pattern.strip("/").split("/") if p not in ("", ".")]
    regex = ""
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:.*/)?"
        else:
            regex += _element(part) + ("" if last else "/")
    return re.compile(f"^{regex}$")


def read_rules(text: str) -> list[Rule]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        rules.append(Rule(compile_pattern(line[1:] if include else line), include))
    return rules


def ignore_file_for(containerfile: Path, context: Path) -> Path | None:
    """The ignore file Docker would use for this Containerfile and context."""
    for candidate in (
        containerfile.with_name(containerfile.name + ".dockerignore"),
        context / ".dockerignore",
    ):
        if candidate.is_file():
            return candidate
    return None


class Ignore:
    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules

    @classmethod
    def for_build(cls, containerfile: Path, context: Path) -> Ignore:
        path = ignore_file_for(containerfile, context)
        return cls(read_rules(path.read_text()) if path else [])

    def excluded(self, relative: str) -> bool:
        """Whether a context-relative path (POSIX separators) is left out of the context.

        Each rule is tried against the path and every directory above it; the
        last rule that matches decides (so `!dir/keep` re-includes below `dir`).
        """
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        verdict = False
        for rule in self.rules:
            if any(rule.pattern.match(c) for c in candidates):
                verdict = not rule.include
        return verdict

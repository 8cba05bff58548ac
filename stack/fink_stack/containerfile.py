"""Reading a Containerfile (Dockerfile syntax) into the instructions the local builder runs.

The local stack builds the project's images from the very files users hand to
`docker build`, so the two cannot drift. This module reads the subset of the
syntax those files use: FROM, RUN, COPY, ENV, ARG, WORKDIR, USER, LABEL,
EXPOSE, ENTRYPOINT, CMD; backslash continuations; comments; shell and JSON
(exec) forms; $VAR / ${VAR} / ${VAR:-default} / ${VAR:+alternative}
substitution where Docker substitutes. Anything else (multi-stage builds,
heredocs, ADD, COPY --from) is refused with the line number, rather than
built differently from Docker.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SUPPORTED = (
    "FROM",
    "RUN",
    "COPY",
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "LABEL",
    "EXPOSE",
    "ENTRYPOINT",
    "CMD",
)
COPY_FLAGS = ("--chown", "--chmod")


class ContainerfileError(ValueError):
    """The file uses syntax the local builder does not build the way Docker would."""


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined, as written
    line: int  # where the instruction starts (1-based)

    @property
    def text(self) -> str:
        """The instruction as one line: what the image history records."""
        return f"{self.keyword} {self.arguments}"

    def exec_form(self) -> list[str] | None:
        """The JSON array of RUN/CMD/ENTRYPOINT, or None for the shell form."""
        if not self.arguments.startswith("["):
            return None
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return None  # Docker, too, falls back to the shell form
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None


def parse(text: str) -> list[Instruction]:
    """The instructions of a Containerfile, in order, continuations joined."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and (stripped.startswith("#") or not stripped):
            continue  # comments and blank lines inside a continuation are dropped
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        instructions.append(_instruction(" ".join(p for p in pending if p), start))
        pending = []
    if pending:
        instructions.append(_instruction(" ".join(p for p in pending if p), start))
    _check(instructions)
    return instructions


def parse_file(path: Path) -> list[Instruction]:
    try:
        return parse(path.read_text())
    except ContainerfileError as error:
        raise ContainerfileError(f"{path}: {error}") from None


def _instruction(line: str, number: int) -> Instruction:
    keyword, _, arguments = line.partition(" ")
    keyword = keyword.upper()
    if keyword not in SUPPORTED:
        raise ContainerfileError(
            f"line {number}: {keyword} is not supported by the local builder "
            f"(supported: {', '.join(SUPPORTED)})"
        )
    if "<<" in arguments and keyword in ("RUN", "COPY"):
        raise ContainerfileError(f"line {number}: heredocs are not supported")
    return Instruction(keyword, arguments.strip(), number)


def _check(instructions: list[Instruction]) -> None:
    froms = [i for i in instructions if i.keyword == "FROM"]
    if len(froms) != 1:
        raise ContainerfileError(f"exactly one FROM is supported, found {len(froms)}")
    before = instructions[: instructions.index(froms[0])]
    if any(i.keyword != "ARG" for i in before):
        raise ContainerfileError("only ARG may come before FROM")
    if " AS " in f" {froms[0].arguments.upper()} ":
        raise ContainerfileError(f"line {froms[0].line}: named stages are not supported")


# ---------------------------------------------------------------- substitution

_VARIABLE = re.compile(
    r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(text: str, variables: dict[str, str]) -> str:
    """Docker's variable substitution (the instructions that take it, not RUN)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "\\$":
            return "$"
        name = match.group("braced") or match.group("plain")
        value = variables.get(name, "")
        operator = match.group("op")
        if operator == ":-":
            return value or substitute(match.group("word"), variables)
        if operator == ":+":
            return substitute(match.group("word"), variables) if value else ""
        return value

    return _VARIABLE.sub(replace, text)


def key_values(arguments: str, variables: dict[str, str], keyword: str) -> list[tuple[str, str]]:
    """ENV/LABEL pairs: `k=v k2="v 2"`, or the legacy `ENV key value with spaces`."""
    words = shlex.split(arguments, posix=True)
    if words and "=" not in words[0]:
        if keyword != "ENV" or len(words) < 2:
            raise ContainerfileError(f"{keyword} {arguments}: expected key=value pairs")
        name, _, rest = arguments.partition(" ")
        return [(name, substitute(rest.strip(), variables))]
    pairs = []
    for word in words:
        name, equals, value = word.partition("=")
        if not equals:
            raise ContainerfileError(f"{keyword} {arguments}: '{word}' is not key=value")
        pairs.append((name, substitute(value, variables)))
    return pairs


def arg_default(arguments: str, variables: dict[str, str]) -> dict[str, str]:
    """ARG name[=default]: the default unquoted and substituted ("" when there is none)."""
    words = shlex.split(arguments)
    if len(words) != 1:
        raise ContainerfileError(f"ARG {arguments}: declare one name per ARG")
    name, _, default = words[0].partition("=")
    return {name: substitute(default, variables)}


@dataclass(frozen=True)
class CopyArguments:
    sources: tuple[str, ...]
    destination: str
    chown: str | None
    chmod: str | None


def copy_arguments(arguments: str, variables: dict[str, str]) -> CopyArguments:
    """COPY [--chown=u:g] [--chmod=mode] src... dest (shell or JSON form)."""
    words = shlex.split(substitute(arguments, variables))
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0).partition("=")
        if name not in COPY_FLAGS:
            raise ContainerfileError(f"COPY {name} is not supported by the local builder")
        flags[name] = value
    if arguments.lstrip().startswith("["):
        words = json.loads(arguments)
    if len(words) < 2:
        raise ContainerfileError(f"COPY {arguments}: needs at least one source and a destination")
    *sources, destination = words
    if len(sources) > 1 and not destination.endswith("/"):
        raise ContainerfileError(
            f"COPY {arguments}: with several sources, end the destination in /"
        )
    return CopyArguments(tuple(sources), destination, flags.get("--chown"), flags.get("--chmod"))

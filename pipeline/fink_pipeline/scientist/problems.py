"""What can go wrong for a scientist, as exceptions that carry their exit code.

The command line maps each to one line on stderr and an exit code, the same
codes for every subcommand, so scripts (and CI jobs testing a filter) can tell
"my filter is wrong" from "my input is wrong" from "the cluster is away".
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

EXIT_OK = 0
EXIT_FILTER_FAILED = 1  # the filter is refused or fails: change the code
EXIT_BAD_INPUT = 2  # no such file, bad YAML, an unknown survey or name: change the command
EXIT_UNREACHABLE = 3  # the API server or Kafka does not answer (or lacks what is needed)
EXIT_TIMEOUT = 4  # waited for a state that did not come


class Problem(Exception):
    """A failure the command reports in one line; `exit_code` says which kind."""

    exit_code = EXIT_FILTER_FAILED


class FilterFailed(Problem):
    """The filter's code is refused or fails; the message points at the line to change."""

    exit_code = EXIT_FILTER_FAILED


class BadInput(Problem):
    exit_code = EXIT_BAD_INPUT


class Unreachable(Problem):
    exit_code = EXIT_UNREACHABLE


class TimedOut(Problem):
    exit_code = EXIT_TIMEOUT


_LINE = re.compile(r"\bline (\d+)(?:, column (\d+))?")
_AT_LINE = re.compile(r" at line (\d+) of your filter\b")  # the sandbox's way


def statement_column(code: str, line: int) -> int | None:
    """Column (from 1) where the innermost statement on LINE starts.

    The sandbox reports the line a run-time error came from, not the column:
    pointing at the start of that statement is exact for one-statement lines,
    which is what filters are made of.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    found: int | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and node.lineno <= line <= (node.end_lineno or node.lineno):
            found = node.col_offset + 1  # ast.walk goes outside in: the last is the innermost
    return found


def pointed(path: Path | str, code: str, message: str, line: int | None = None) -> str:
    """The message as Python prints errors: `FILE, line L, column C: message`, the line, a caret.

    LINE and COLUMN come from the message (`line 5, column 9: ...`, as the
    static checks and the operator write them) or from `line` (the sandbox's).
    """
    column: int | None = None
    sandbox = _AT_LINE.search(message)
    if sandbox:
        line = int(sandbox.group(1))
        message = message[: sandbox.start()] + message[sandbox.end() :]
    match = _LINE.search(message)
    if match:
        line = int(match.group(1))
        column = int(match.group(2)) if match.group(2) else None
        message = message[: match.start()] + message[match.end() :]
        message = re.sub(r":\s*:", ":", message).strip().removeprefix(":").strip()
    if line is None:
        return f"{path}: {message}"
    if column is None:
        column = statement_column(code, line)
    lines = code.splitlines()
    where = f"{path}, line {line}" + (f", column {column}" if column else "")
    text = f"{where}: {message}"
    if 1 <= line <= len(lines):
        source = lines[line - 1]
        text += f"\n    {source}"
        if column:
            text += "\n    " + " " * (column - 1) + "^"
    return text

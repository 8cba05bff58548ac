"""Static checks of a science filter's code, before it ever runs.

A science filter follows Fink's convention (the fink-filters package): a
module-level function whose parameters are named after the alert columns it
reads, each receiving a pandas Series, and which returns a boolean Series of
the same length. `check_source` refuses, with the line and column and a message
that says what to change, code that cannot be such a filter or that reaches for
more than alerts: files, the network, other programs, dynamic code.

These checks are a first line that gives scientists early, precise feedback
(the operator runs them when a resource is applied). They are not the isolation:
Python cannot be sandboxed from the inside, and code can get around any static
rule (through attributes of allowed libraries, for instance). The isolation is
`fink_core.filters.sandbox`, which runs the code in a separate process with
limits and refuses files, network and programs at run time.

Only the standard library's `ast` is used: no pandas, no Spark, nothing run.

What real fink-filters files need, and is therefore allowed:

- the pandas UDF decorator and its imports: ``from pyspark.sql.functions import
  pandas_udf, PandasUDFType`` and ``from pyspark.sql.types import BooleanType``
  (any name of `pyspark.sql.types`); the sandbox unwraps the UDF's `.func`;
- ``from fink_filters.tester import spark_unit_tests``, which fink-filters files
  import at the top level (only that name of that module);
- an ``if __name__ == "__main__":`` block (it runs the file's own tests with
  ``globals()``): it is not checked at all, because it never runs (the sandbox
  removes it before running the code).

Beyond the names the brief of this check lists (`open`, `exec`, `eval`, ...),
`getattr`, `setattr` and `delattr` are refused too: with them a string such as
``"__globals__"`` gets around the double-underscore rule.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

#: Modules a filter may import. ``None``: the module, its submodules and any name
#: from them. A set: only ``from MODULE import NAME`` with NAME in the set (the
#: plain ``import MODULE`` form would bind more than the decorator needs).
ALLOWED_IMPORTS: Mapping[str, frozenset[str] | None] = {
    "__future__": None,
    "numpy": None,
    "pandas": None,
    "math": None,
    "statistics": None,
    "re": None,
    "datetime": None,
    "functools": None,
    "itertools": None,
    "collections": None,
    "typing": None,
    "fink_utils": None,
    # the pandas UDF decorator of fink-filters' files: the sandbox unwraps `.func`
    "pyspark.sql.functions": frozenset({"pandas_udf", "PandasUDFType"}),
    "pyspark.sql.types": frozenset({"*"}),
    # imported at the top level by fink-filters' files, used only in their __main__ block
    "fink_filters.tester": frozenset({"spark_unit_tests"}),
}

#: Names a filter may not use anywhere, and why (the end of the message).
REFUSED_NAMES: Mapping[str, str] = {
    "open": "filters see alerts only, not files",
    "input": "filters see alerts only: nobody is there to type an answer",
    "breakpoint": "filters run unattended: there is no debugger to stop in",
    "exec": "filters may not run code built at run time",
    "eval": "filters may not run code built at run time",
    "compile": "filters may not run code built at run time",
    "__import__": "filters may not import modules at run time; import at the top of the file",
    "globals": "filters read the alert columns they name, not the interpreter's variables",
    "locals": "filters read the alert columns they name, not the interpreter's variables",
    "vars": "filters read the alert columns they name, not the interpreter's variables",
    "getattr": "filters may not reach attributes by a name built at run time; write `obj.name`",
    "setattr": "filters may not change objects through names built at run time",
    "delattr": "filters may not change objects through names built at run time",
}

_DUNDER_REASON = (
    "names that start and end with two underscores reach the interpreter's internals, "
    "and filters see alerts only"
)


class FilterCodeError(Exception):
    """The filter's code cannot run as a filter; the message says what to change.

    `line` and `column` (both counted from 1, as editors do) point at the
    offending code when there is one place to point at.
    """

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message, line, column)

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        if self.column is None:
            return f"line {self.line}: {self.message}"
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(frozen=True)
class CheckedSource:
    """A filter that passed the static checks: what to load and which columns it reads."""

    entrypoint: str
    reads: tuple[str, ...]  # the entrypoint's parameter names, in order: the columns it reads
    code: str
    docstring: str  # first line of the entrypoint's docstring, or ""


def public_functions(code: str) -> list[str] | None:
    """The code's public top-level functions, in order; None when it does not parse.

    A filter with no entrypoint named is its only one: the operator and `fink-filter`
    choose it the same way (check_source reports a syntax error with its place).
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]


def is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` at the top level: the file's own tests, never run here.

    Shared with the sandbox, which removes these blocks before running the code.
    """
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    has_main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return has_name and has_main


def without_main_guards(tree: ast.Module) -> ast.Module:
    """The module with its ``if __name__ == "__main__":`` blocks removed (line numbers kept)."""
    tree.body = [node for node in tree.body if not is_main_guard(node)]
    return tree


def check_source(code: str, entrypoint: str, columns: Mapping[str, str]) -> CheckedSource:
    """Check a filter's code statically; raise `FilterCodeError` at the first problem.

    `columns` are the columns the pipeline produces (name -> Spark type string);
    each parameter of the entrypoint must name one. Checks, in order: the code
    parses; imports come from `ALLOWED_IMPORTS`; no refused name
    (`REFUSED_NAMES`, double-underscore names); the entrypoint is a top-level
    ``def``; its parameters are plain, at least one, each a column.
    """
    try:
        tree = ast.parse(code, filename="<filter>")
    except SyntaxError as error:
        raise FilterCodeError(
            f"this is not valid Python: {error.msg}; fix the syntax at this place",
            error.lineno,
            error.offset,
        ) from None
    checked = [node for node in tree.body if not is_main_guard(node)]
    _first(_import_problems(checked))
    _first(_name_problems(checked))
    function = _entrypoint(checked, entrypoint)
    reads = _parameters(function, columns)
    docstring = ast.get_docstring(function) or ""
    return CheckedSource(
        entrypoint=entrypoint,
        reads=reads,
        code=code,
        docstring=docstring.strip().splitlines()[0] if docstring.strip() else "",
    )


def _first(problems: Iterable[FilterCodeError]) -> None:
    """Raise the problem that comes first in the file, if any (ast.walk is not in file order)."""
    ordered = sorted(problems, key=lambda p: (p.line or 0, p.column or 0))
    if ordered:
        raise ordered[0]


def _walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    for node in nodes:
        yield from ast.walk(node)


def _at(node: ast.AST, message: str) -> FilterCodeError:
    return FilterCodeError(message, getattr(node, "lineno", None), _column(node))


def _column(node: ast.AST) -> int | None:
    offset = getattr(node, "col_offset", None)
    return None if offset is None else offset + 1


def _allowed_list() -> str:
    return ", ".join(sorted(m for m in ALLOWED_IMPORTS if m != "__future__"))


def _module_rule(module: str) -> tuple[bool, frozenset[str] | None]:
    """(allowed, names): whether MODULE may be imported, and which names of it (None: any)."""
    if module in ALLOWED_IMPORTS:
        return True, ALLOWED_IMPORTS[module]
    for allowed, names in ALLOWED_IMPORTS.items():
        if names is None and module.startswith(allowed + "."):
            return True, None
    return False, None


def _import_problems(nodes: list[ast.stmt]) -> Iterator[FilterCodeError]:
    for node in _walk(nodes):
        if isinstance(node, ast.Import):
            for alias in node.names:
                allowed, names = _module_rule(alias.name)
                if not allowed:
                    yield _at(node, _refused_module(alias.name))
                elif names is not None:
                    yield _at(
                        node,
                        f"write `from {alias.name} import {', '.join(sorted(names - {'*'}) or ['...'])}`"
                        f" rather than `import {alias.name}`: filters may use only "
                        f"{'these names' if '*' not in names else 'names'} from it",
                    )
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield _at(
                    node,
                    "relative imports are not possible: a filter is one file; "
                    f"import from these modules only: {_allowed_list()}",
                )
                continue
            module = node.module or ""
            allowed, names = _module_rule(module)
            if not allowed:
                yield _at(node, _refused_module(module))
            elif names is not None and "*" not in names:
                for alias in node.names:
                    if alias.name not in names:
                        yield _at(
                            node,
                            f"`{alias.name}` cannot be imported from {module}: filters may "
                            f"import only {', '.join(sorted(names))} from it",
                        )


def _refused_module(module: str) -> str:
    return (
        f"module `{module}` cannot be imported: filters see alerts only (no files, network "
        f"or programs); import from these modules only: {_allowed_list()}"
    )


def _name_problems(nodes: list[ast.stmt]) -> Iterator[FilterCodeError]:
    for node in _walk(nodes):
        name: str | None = None
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.alias):
            name = node.asname or node.name.split(".")[0]
            if name == "__future__":
                continue
        elif isinstance(node, ast.arg | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = node.arg if isinstance(node, ast.arg) else node.name
        if name is None:
            continue
        if name in REFUSED_NAMES and not isinstance(node, ast.Attribute):
            yield _at(node, f"`{name}` cannot be used in a filter: {REFUSED_NAMES[name]}")
        elif len(name) > 4 and name.startswith("__") and name.endswith("__"):
            yield _at(node, f"`{name}` cannot be used in a filter: {_DUNDER_REASON}")


def _entrypoint(nodes: list[ast.stmt], entrypoint: str) -> ast.FunctionDef:
    functions = [n for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    found = [f for f in functions if f.name == entrypoint]
    if not found:
        names = [f.name for f in functions]
        close = difflib.get_close_matches(entrypoint, names, n=1)
        hint = (
            f"did you mean `{close[0]}`?"
            if close
            else (
                f"the file defines {', '.join(f'`{n}`' for n in names)}"
                if names
                else "the file defines no function"
            )
        )
        raise FilterCodeError(
            f"the entrypoint `{entrypoint}` is not a function defined at the top level of the "
            f"filter ({hint}); write `def {entrypoint}(...)` or change the resource's entrypoint",
            None,
            None,
        )
    function = found[-1]  # as in Python, the last definition wins
    if isinstance(function, ast.AsyncFunctionDef):
        raise _at(function, f"`{entrypoint}` must be a plain `def`, not `async def`")
    return function


def _parameters(function: ast.FunctionDef, columns: Mapping[str, str]) -> tuple[str, ...]:
    args = function.args
    for star, arg in (("*", args.vararg), ("**", args.kwarg)):
        if arg is not None:
            raise _at(
                arg,
                f"`{star}{arg.arg}` is not possible: a filter names each column it reads as one "
                f"parameter, e.g. `def {function.name}(rb, nbad)`",
            )
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if not params:
        raise _at(
            function,
            f"`{function.name}` reads no column: name the alert columns it reads as its "
            f"parameters, e.g. `def {function.name}(rb, nbad)`",
        )
    for param in params:
        if param.arg not in columns:
            close = difflib.get_close_matches(param.arg, list(columns), n=3)
            if close:
                hint = "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
            else:
                shown = sorted(columns)
                hint = "the columns are " + ", ".join(f"`{c}`" for c in shown[:30])
                hint += ", ..." if len(shown) > 30 else ""
            raise _at(
                param,
                f"parameter `{param.arg}` names no column of the alerts ({hint}); a filter's "
                "parameters are the columns it reads",
            )
    return tuple(p.arg for p in params)

"""The sandbox's child process: loads scientists' filters and runs them on alerts.

Started by `fink_core.filters.sandbox.FilterSandbox` as
``python -P -m fink_core.filters._child MEMORY_BYTES``; never imported by the
parent. It talks to the parent over two private pipes (file descriptors
duplicated from stdin and stdout at start; fd 0 then reads /dev/null and fd 1
writes to stderr, so a filter's `print` cannot corrupt the protocol):

- parent -> child: frames of 8-byte big-endian length + pickle (the parent is
  trusted): ``("load", filter_id, code, entrypoint)``, ``("run", filter_id,
  columns, rows)``, ``("unload", filter_id)``;
- child -> parent: a frame holding a JSON header, then for a successful run a
  frame holding the mask as raw bytes (one byte per alert). JSON and raw bytes,
  not pickle: this process runs untrusted code, and the parent must never
  unpickle what it sends.

Isolation, in the order it is set up:

1. numpy, pandas and (when installed) pyspark's UDF modules are imported first,
   while nothing is refused, so their start-up file reads and threads are done.
2. ``RLIMIT_AS`` (address space) is set to MEMORY_BYTES, after those imports: a
   filter that allocates too much gets a MemoryError (reported as "memory").
   ``RLIMIT_CORE`` is 0 (no core dumps). Not ``RLIMIT_FSIZE``: stderr may be a
   log file (Spark's), and the hook refuses opening files for writing anyway.
3. An audit hook (`sys.addaudithook`; it cannot be removed) then refuses, for
   the rest of the process's life, so at load time as at call time: sockets and
   network clients, starting programs (subprocess, os.system, exec, spawn,
   fork, posix_spawn, kill), opening files for writing, changing files
   (remove, rename, mkdir, chmod, shutil, tempfile, ...), native code (ctypes),
   raising resource limits, and reading any file outside Python's installation
   (the prefixes, site-packages and sys.path; plus the time-zone database).
   Reading inside the installation stays allowed because pandas and numpy
   import modules lazily, during a call. One policy for the whole life of the
   process, rather than a looser one during load: a filter could leave a
   thread running from its load, and an audit hook cannot tell whose code
   calls it.

Refusals raise `_Refused`, a BaseException, so a filter's ``except Exception``
does not swallow them; and every refusal during a call is recorded, so the
call is reported as "forbidden" even when the filter caught it anyway.

What this does not isolate: filters loaded in the same child share one
interpreter, so a malicious filter could change what another one computes
(e.g. by replacing a pandas function); the filters of one child should come
from the same trust domain, or be given one sandbox each.
"""

from __future__ import annotations

import os
import sys
from typing import Any, ClassVar, NoReturn

_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class _Refused(BaseException):
    """An action the sandbox refuses; a BaseException so that `except Exception` misses it."""


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the parent dies (best effort; before the hook)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _private_pipes() -> tuple[int, int]:
    """Move the protocol off fds 0 and 1, so that a filter's print or input cannot touch it."""
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return proto_in, proto_out


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(len(payload).to_bytes(8, "big") + payload)
    while view:
        view = view[os.write(fd, view) :]


class _Guard:
    """The audit hook: refuses what a filter may not do, and remembers the first refusal."""

    _NETWORK = (
        "socket.",
        "urllib.Request",
        "http.client.",
        "ftplib.",
        "smtplib.",
        "poplib.",
        "imaplib.",
        "nntplib.",
        "telnetlib.",
        "webbrowser.",
        "ssl.",
    )
    _PROGRAMS = (
        "subprocess.",
        "os.system",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "os.fork",
        "os.forkpty",
        "os.startfile",
        "os.kill",
        "os.killpg",
        "signal.pthread_kill",
        "pty.",
    )
    _FILE_CHANGES = (
        "os.remove",
        "os.unlink",
        "os.rename",
        "os.replace",
        "os.mkdir",
        "os.makedirs",
        "os.rmdir",
        "os.chmod",
        "os.lchmod",
        "os.chown",
        "os.lchown",
        "os.chflags",
        "os.lchflags",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "os.chdir",
        "os.mkfifo",
        "os.mknod",
        "os.setxattr",
        "os.removexattr",
        "os.putenv",
        "os.unsetenv",
        "shutil.",
        "tempfile.",
        "sqlite3.",
        "dbm.",
        "syslog.",
    )
    _INTERPRETER = (
        "resource.setrlimit",
        "resource.prlimit",
        "sys.addaudithook",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "code.__new__",
        "builtins.input",
    )

    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self.refusal: tuple[str, str] | None = None  # (event, message) of the first refusal

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        # Cheap exits first: the hook sees every audited event of the process.
        if event == "open":
            self._open(args)
        elif event in ("os.listdir", "os.scandir", "glob.glob"):
            path = args[0] if args else None
            if not self._readable(path if path is not None else "."):
                self._refuse(event, f"tried to list the directory {path!r}", "files")
        elif event == "mmap.__new__":
            if args and args[0] != -1:
                self._refuse(event, "tried to map a file into memory", "files")
        elif event.startswith(self._NETWORK):
            self._refuse(event, "tried to open a network connection", "network")
        elif event.startswith(self._PROGRAMS):
            self._refuse(event, "tried to start or signal another program", "programs")
        elif event.startswith(self._FILE_CHANGES):
            self._refuse(event, "tried to change files", "files")
        elif event.startswith("ctypes."):
            self._refuse(event, "tried to load or call native code", "native")
        elif event.startswith(self._INTERPRETER):
            self._refuse(event, "tried to reach the interpreter's internals", "interpreter")

    def _open(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = [*args, None, None, None][:3]
        writing = (
            any(c in mode for c in "wax+")
            if isinstance(mode, str)
            else bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC))
        )
        if writing:
            self._refuse("open", f"tried to write the file {path!r}", "files")
        if not self._readable(path):
            self._refuse("open", f"tried to read the file {path!r}", "files")

    def _readable(self, path: Any) -> bool:
        """Whether PATH lies inside Python's installation (modules, package data)."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return False  # a file descriptor, e.g. os.fdopen of the protocol's pipes
        real = os.path.realpath(path)
        return any(real == root or real.startswith(root + os.sep) for root in self.roots)

    _WHY: ClassVar[dict[str, str]] = {
        "network": "filters may not reach the network",
        "programs": "filters may not run other programs",
        "files": "filters see alerts only, no files",
        "native": "filters may run Python only (numpy and pandas bring their own native code)",
        "interpreter": "filters compute on the alert columns they read, nothing else",
    }

    def _refuse(self, event: str, what: str, family: str) -> NoReturn:
        message = f"{what} ({event}): {self._WHY[family]}"
        if self.refusal is None:
            self.refusal = (event, message)
        raise _Refused(message)


def _install_roots() -> list[str]:
    """The directories whose files a filter's libraries may read: Python's installation."""
    import site
    import sysconfig

    candidates = {
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        sys.base_exec_prefix,
        *sysconfig.get_paths().values(),
        *site.getsitepackages(),
        *(p for p in sys.path if p),
        "/usr/share/zoneinfo",  # the time-zone database of datetime and pandas
    }
    roots = {os.path.realpath(path) for path in candidates}
    # never the whole disk, the home directory or the working directory
    roots -= {os.sep, os.path.realpath(os.getcwd()), os.path.realpath(os.path.expanduser("~"))}
    return sorted(roots)


def _user_line(traceback_: Any, filename: str) -> int | None:
    """The deepest line of the filter's own code in a traceback (no file is read)."""
    line = None
    while traceback_ is not None:
        if traceback_.tb_frame.f_code.co_filename == filename:
            line = traceback_.tb_lineno
        traceback_ = traceback_.tb_next
    return line


class _Child:
    """The loaded filters and the request handlers."""

    def __init__(self, guard: _Guard, memory_bytes: int) -> None:
        import numpy
        import pandas

        self.np = numpy
        self.pd = pandas
        self.guard = guard
        self.memory_bytes = memory_bytes
        self.functions: dict[str, tuple[Any, int, tuple[str, ...], str]] = {}

    # -- helpers ---------------------------------------------------------------

    def _failure(self, kind: str, message: str, line: int | None) -> dict[str, Any]:
        where = f" at line {line} of your filter" if line is not None else ""
        return {"ok": False, "kind": kind, "message": message + where, "line": line}

    def _from_exception(
        self, error: BaseException, filename: str, rows: int | None
    ) -> dict[str, Any]:
        line = _user_line(error.__traceback__, filename)
        on = f" on {rows} alerts" if rows is not None else " while loading"
        if isinstance(error, _Refused) or self.guard.refusal is not None:
            message = self.guard.refusal[1] if self.guard.refusal else str(error)
            return self._failure("forbidden", message, line)
        if isinstance(error, MemoryError):
            mib = self.memory_bytes // (1 << 20)
            return self._failure(
                "memory",
                f"needed more memory than the {mib} MiB a filter process may use{on}, "
                "and was stopped",
                line,
            )
        text = str(error)
        return self._failure(
            "raised", f"raised {type(error).__name__}{': ' + text if text else ''}", line
        )

    # -- requests --------------------------------------------------------------

    def load(self, filter_id: str, code: str, entrypoint: str) -> dict[str, Any]:
        import ast
        import inspect
        import linecache
        import types

        from fink_core.filters.source import without_main_guards

        filename = f"<filter {filter_id}>"
        self.guard.refusal = None
        try:
            tree = without_main_guards(ast.parse(code, filename=filename))
            compiled = compile(tree, filename, "exec")
        except SyntaxError as error:
            return self._failure("raised", f"does not compile: {error.msg}", error.lineno)
        # tracebacks and warnings find the source here, instead of opening a file
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        module = types.ModuleType(f"fink_filter_{len(self.functions)}")
        try:
            exec(compiled, module.__dict__)
        except BaseException as error:
            return self._from_exception(error, filename, None)
        if self.guard.refusal is not None:
            return self._failure("forbidden", self.guard.refusal[1], None)
        function = module.__dict__.get(entrypoint)
        # a pandas_udf-decorated function (fink-filters' files): the plain function is .func
        if hasattr(function, "func") and hasattr(function, "evalType"):
            function = function.func
        if not callable(function):
            return self._failure(
                "raised", f"defines no function `{entrypoint}` (its entrypoint)", None
            )
        params = list(inspect.signature(function).parameters.values())
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params) or not params:
            return self._failure(
                "raised", f"`{entrypoint}` must name the columns it reads as its parameters", None
            )
        positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        reads = tuple(p.name for p in params)
        self.functions[filter_id] = (function, positional, reads, filename)
        return {"ok": True, "reads": list(reads)}

    def run(
        self, filter_id: str, columns: list[tuple[str, str, Any]], rows: int
    ) -> tuple[dict[str, Any], bytes | None]:
        pd = self.pd
        function, positional, reads, filename = self.functions[filter_id]
        series = {
            name: pd.Series(values, name=name, copy=False) if form == "array" else values
            for form, name, values in columns
        }
        args = [series[name] for name in reads[:positional]]
        kwargs = {name: series[name] for name in reads[positional:]}
        self.guard.refusal = None
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            return self._from_exception(error, filename, rows), None
        if self.guard.refusal is not None:
            return self._failure("forbidden", self.guard.refusal[1], None), None
        try:
            mask = self._mask(result, rows)
        except ValueError as error:
            return self._failure("bad-result", str(error), None), None
        except BaseException as error:  # e.g. a result whose conversion runs filter code
            return self._from_exception(error, filename, rows), None
        return {"ok": True, "rows": rows}, mask.tobytes()

    def _mask(self, result: Any, rows: int) -> Any:
        """One bool per alert from what the filter returned; nulls count as False."""
        np, pd = self.np, self.pd
        expected = "return one True/False per alert, e.g. `return (rb >= 0.55) & (nbad == 0)`"
        if isinstance(result, pd.DataFrame):
            raise ValueError(f"returned a table of {result.shape[1]} columns; {expected}")
        if isinstance(result, list | tuple):
            result = pd.Series(result, dtype=object)
        if not isinstance(result, pd.Series | pd.Index | np.ndarray):
            raise ValueError(f"returned a {type(result).__name__}, not a Series; {expected}")
        if result.ndim != 1 or len(result) != rows:
            raise ValueError(f"returned {len(result)} values for {rows} alerts; {expected}")
        dtype = result.dtype
        if dtype == np.dtype(bool):
            return np.asarray(result, dtype=bool)
        if isinstance(dtype, pd.BooleanDtype):
            return np.asarray(pd.Series(result).fillna(False), dtype=bool)
        if dtype == np.dtype(object):
            values = np.asarray(result, dtype=object)
            nulls = pd.isna(values)
            if all(isinstance(v, bool | np.bool_) for v in values[~nulls]):
                values[nulls] = False
                return values.astype(bool)
        raise ValueError(
            f"returned values of type {dtype}, not True/False; compare the columns to get "
            f"booleans, e.g. `rb >= 0.55`; {expected}"
        )


def _serve(proto_in: int, proto_out: int, child: _Child) -> int:
    import json
    import pickle

    while True:
        header = _read_exact(proto_in, 8)
        if header is None:
            return 0  # the parent closed the pipe: the sandbox was closed
        payload = _read_exact(proto_in, int.from_bytes(header, "big"))
        if payload is None:
            return 0
        request = pickle.loads(payload)
        mask = None
        if request[0] == "load":
            reply = child.load(*request[1:])
        elif request[0] == "run":
            reply, mask = child.run(*request[1:])
        elif request[0] == "unload":
            child.functions.pop(request[1], None)
            reply = {"ok": True}
        else:
            reply = {"ok": False, "kind": "crashed", "message": f"unknown request {request[0]}"}
        _write_frame(proto_out, json.dumps(reply).encode())
        if mask is not None:
            _write_frame(proto_out, mask)


def main() -> int:
    """Set up the isolation (imports, limits, audit hook), say ready, then serve requests."""
    memory_bytes = int(sys.argv[1])
    proto_in, proto_out = _private_pipes()
    _die_with_parent()
    sys.dont_write_bytecode = True  # writing .pyc files would be refused
    # everything this module uses later, imported while files may still be read
    import ast  # noqa: F401
    import importlib.util
    import inspect  # noqa: F401
    import json
    import linecache  # noqa: F401
    import pickle  # noqa: F401
    import resource
    import types  # noqa: F401
    import warnings

    import numpy  # noqa: F401  (imported before the limits: their start-up needs files)
    import pandas  # noqa: F401

    import fink_core.filters.source  # noqa: F401
    from fink_core.filters import spark_shim

    try:  # the UDF decorator of fink-filters' files
        import pyspark.sql.functions
        import pyspark.sql.types  # noqa: F401

        spark_missing = False
    except ImportError:  # the operator's image: fink-filters' files load all the same
        spark_missing = True
    tester_missing = importlib.util.find_spec("fink_filters") is None
    spark_shim.install(pyspark=spark_missing, fink_filters_tester=tester_missing)
    # "PandasUDFType will be deprecated": the scientist cannot act on it here
    warnings.filterwarnings("ignore", category=UserWarning, module="pyspark")
    guard = _Guard(_install_roots())
    child = _Child(guard, memory_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.addaudithook(guard)
    _write_frame(proto_out, json.dumps({"ok": True, "ready": os.getpid()}).encode())
    return _serve(proto_in, proto_out, child)


if __name__ == "__main__":
    sys.exit(main())

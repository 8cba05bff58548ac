"""Build an image from a Containerfile without Docker or a registry: the local builder.

Each instruction gets a cache key chained from the previous one (its text, the
build state it sees, and for COPY a hash of the files it copies), so changing
only the project's source rebuilds only the steps from the first COPY of that
source on. A step that changes the filesystem (RUN, COPY, WORKDIR) runs on an
overlay mount: the cached directories of the earlier steps, and the base root
filesystem, are its read-only lower layers, and its upper directory, which
then holds exactly what the step changed, is kept as the step's layer (as a
directory for later steps, and as a layer tar for the image).

RUN executes in a private mount and PID namespace, chrooted into the merged
tree, with /proc mounted and a minimal /dev, sharing the host's network; the
host's package-client settings are visible during the step only (buildenv).
The image's configuration (Env, WorkingDir, User, Entrypoint, Cmd, Labels,
ExposedPorts) and history follow the instructions as Docker records them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import buildenv, containerfile
from .artefacts import BuildError, file_lock
from .containerfile import ContainerfileError, Instruction
from .ignorefile import Ignore
from .ocilayout import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    Blob,
    image_documents,
    is_empty,
    write_layer,
)
from .rootfs import KNOWN_BASES, DebianBase

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LAYER_INSTRUCTIONS = ("RUN", "COPY", "WORKDIR")
BUILDER_VERSION = "1"  # part of every step key: bump when execution semantics change


@dataclass(frozen=True)
class ImageSpec:
    """An image the project defines: its name, its Containerfile and the build context."""

    name: str  # e.g. "pipeline"
    reference: str  # the full name containerd stores, e.g. docker.io/fink-k8s/pipeline:dev
    containerfile: Path
    context: Path

    @property
    def short_reference(self) -> str:
        return self.reference.removeprefix("docker.io/")


@dataclass
class BuildState:
    """What the instructions so far have set (Docker's image config while building)."""

    env: dict[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exposed: dict[str, dict[str, str]] = field(default_factory=dict)

    def variables(self) -> dict[str, str]:
        return {**self.args, **self.env}


@dataclass(frozen=True)
class CopyFile:
    source: Path  # in the context
    destination: str  # absolute, in the image
    kind: str  # "file", "dir" or "link"


@dataclass
class Step:
    instruction: Instruction
    key: str
    state: BuildState  # as the step sees it (before it applies)
    copies: list[CopyFile] = field(default_factory=list)
    copy_owner: tuple[int, int] = (0, 0)
    copy_mode: int | None = None
    workdir_target: str = ""  # for WORKDIR: the directory it makes

    @property
    def makes_layer(self) -> bool:
        return self.instruction.keyword in LAYER_INSTRUCTIONS

    def record(self, cache: Path) -> Path:
        return cache / "images" / "steps" / self.key


@dataclass
class Plan:
    spec: ImageSpec
    base: DebianBase
    steps: list[Step]
    final: BuildState

    @property
    def key(self) -> str:
        return self.steps[-1].key if self.steps else _hash(self.base.key)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _as_list(instruction: Instruction) -> list[str]:
    exec_form = instruction.exec_form()
    return exec_form if exec_form is not None else ["/bin/sh", "-c", instruction.arguments]


# ---------------------------------------------------------------- planning


def plan(spec: ImageSpec) -> Plan:
    """Read the Containerfile and compute every step's cache key (nothing is built)."""
    instructions = containerfile.parse_file(spec.containerfile)
    ignore = Ignore.for_build(spec.containerfile, spec.context)
    global_args: dict[str, str] = {}
    position = 0
    while instructions[position].keyword == "ARG":
        global_args.update(containerfile.arg_default(instructions[position].arguments, {}))
        position += 1
    source = containerfile.substitute(instructions[position].arguments, global_args).strip()
    if source not in KNOWN_BASES:
        raise BuildError(
            f"{spec.containerfile}: FROM {source}: the local builder makes only "
            f"{', '.join(KNOWN_BASES)} (with debootstrap)"
        )
    base = DebianBase(KNOWN_BASES[source])
    state = BuildState()
    key = _hash(BUILDER_VERSION, base.key)
    steps = []
    for instruction in instructions[position + 1 :]:
        before = _copy_state(state)
        step = Step(instruction, "", before)
        extra = _apply(instruction, state, step, spec, ignore)
        key = _hash(key, instruction.text, extra)
        step.key = key
        steps.append(step)
    return Plan(spec, base, steps, state)


def _copy_state(state: BuildState) -> BuildState:
    return BuildState(
        env=dict(state.env),
        args=dict(state.args),
        workdir=state.workdir,
        user=state.user,
        entrypoint=state.entrypoint,
        cmd=state.cmd,
        labels=dict(state.labels),
        exposed=dict(state.exposed),
    )


def _apply(
    instruction: Instruction, state: BuildState, step: Step, spec: ImageSpec, ignore: Ignore
) -> str:
    """Update the build state for one instruction; return what else its cache key covers."""
    keyword, arguments = instruction.keyword, instruction.arguments
    variables = state.variables()
    if keyword == "ENV":
        for name, value in containerfile.key_values(arguments, variables, "ENV"):
            state.env[name] = value
        return ""
    if keyword == "ARG":
        state.args.update(containerfile.arg_default(arguments, variables))
        return ""
    if keyword == "LABEL":
        state.labels.update(containerfile.key_values(arguments, variables, "LABEL"))
        return ""
    if keyword == "EXPOSE":
        for port in containerfile.substitute(arguments, variables).split():
            state.exposed[port if "/" in port else f"{port}/tcp"] = {}
        return ""
    if keyword == "USER":
        state.user = containerfile.substitute(arguments, variables).strip()
        return ""
    if keyword == "WORKDIR":
        path = containerfile.substitute(arguments, variables).strip()
        state.workdir = os.path.normpath(os.path.join(state.workdir, path))
        step.workdir_target = state.workdir
        return state.workdir
    if keyword == "ENTRYPOINT":
        state.entrypoint = _as_list(instruction)
        state.cmd = None  # Docker resets CMD inherited before ENTRYPOINT
        return ""
    if keyword == "CMD":
        state.cmd = _as_list(instruction)
        return ""
    if keyword == "RUN":
        return json.dumps(
            {"env": state.variables(), "user": state.user, "workdir": state.workdir},
            sort_keys=True,
        )
    if keyword == "COPY":
        return _plan_copy(instruction, state, step, spec, ignore)
    raise ContainerfileError(f"line {instruction.line}: {keyword} is not handled")


def _plan_copy(
    instruction: Instruction, state: BuildState, step: Step, spec: ImageSpec, ignore: Ignore
) -> str:
    arguments = containerfile.copy_arguments(instruction.arguments, state.variables())
    context = spec.context.resolve()
    destination = arguments.destination
    if not destination.startswith("/"):
        destination = os.path.join(state.workdir, destination) + (
            "/" if destination.endswith("/") else ""
        )
    digest = hashlib.sha256()
    for source in arguments.sources:
        origin = (context / source).resolve()
        if origin != context and context not in origin.parents:
            raise BuildError(f"line {instruction.line}: COPY {source} is outside the context")
        relative = origin.relative_to(context).as_posix() if origin != context else ""
        if not origin.exists() or (relative and ignore.excluded(relative)):
            raise BuildError(
                f"line {instruction.line}: COPY {source}: not found in the build context "
                f"{context} (or excluded by its .dockerignore)"
            )
        if origin.is_dir() and not origin.is_symlink():
            target = destination.rstrip("/") or "/"
            for path in sorted(origin.rglob("*")):
                inner = path.relative_to(context).as_posix()
                if ignore.excluded(inner):
                    continue
                kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
                step.copies.append(
                    CopyFile(path, f"{target}/{path.relative_to(origin).as_posix()}", kind)
                )
        else:
            target = destination + origin.name if destination.endswith("/") else destination
            kind = "link" if origin.is_symlink() else "file"
            step.copies.append(CopyFile(origin, target, kind))
    for copy in step.copies:
        st = copy.source.lstat()
        digest.update(f"{copy.destination}\0{copy.kind}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if copy.kind == "file":
            digest.update(hashlib.sha256(copy.source.read_bytes()).digest())
        elif copy.kind == "link":
            digest.update(os.readlink(copy.source).encode())
    if arguments.chown:
        user, _, group = arguments.chown.partition(":")
        if not user.isdigit() or (group and not group.isdigit()):
            raise BuildError(f"line {instruction.line}: COPY --chown takes numeric ids here")
        step.copy_owner = (int(user), int(group or user))
    if arguments.chmod:
        step.copy_mode = int(arguments.chmod, 8)
    return f"{digest.hexdigest()} owner={step.copy_owner} mode={step.copy_mode}"


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class LayerRecord:
    digest: str
    size: int
    empty: bool


def step_layer(step: Step, cache: Path) -> LayerRecord:
    record = json.loads((step.record(cache) / "step.json").read_text())
    return LayerRecord(record["digest"], record["size"], record["empty"])


def build(plan_: Plan, cache: Path, log: Path) -> None:
    """Run every step whose layer is not cached, in order."""
    plan_.base.ensure(cache)
    lowers = [plan_.base.rootfs(cache)]
    for step in plan_.steps:
        if step.makes_layer:
            record = step.record(cache)
            if not (record / ".complete").exists():
                with file_lock(cache / "locks" / f"image-step-{step.key[:16]}.lock"):
                    if not (record / ".complete").exists():
                        _run_step(step, lowers, plan_, cache, log)
            if not step_layer(step, cache).empty:
                lowers.append(record / "upper")


def _run_step(step: Step, lowers: list[Path], plan_: Plan, cache: Path, log: Path) -> None:
    instruction = step.instruction
    _say(log, f"step {instruction.line}: {instruction.text[:200]}")
    scratch = cache / "images" / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{step.key[:12]}-", dir=scratch))
    try:
        for name in ("upper", "work", "merged", "build"):
            (work / name).mkdir()
        script = _overlay_mount(lowers, work)
        if instruction.keyword == "RUN":
            script += _run_script(step, lowers, work)
        elif instruction.keyword == "COPY":
            _stage_copy(step, work / "stage")
            script += _copy_script(work)
        else:  # WORKDIR
            script += f'mkdir -p "$M"{shlex.quote(step.workdir_target)}\n'
        (work / "step.sh").write_text(script)
        result = _in_namespace(work / "step.sh", log)
        if result != 0:
            raise BuildError(
                f"{plan_.spec.containerfile}, line {instruction.line}: "
                f"`{instruction.text[:120]}` failed (exit {result}); log: {log}"
            )
        upper = work / "upper"
        empty = is_empty(upper)
        digest, size = ("", 0) if empty else write_layer(upper, work / "layer.tar")
        (work / "step.json").write_text(
            json.dumps(
                {
                    "digest": digest,
                    "size": size,
                    "empty": empty,
                    "instruction": instruction.text,
                    "line": instruction.line,
                }
            )
        )
        _say(log, f"step {instruction.line}: layer of {size / 1e6:.1f} MB")
        record = step.record(cache)
        record.mkdir(parents=True, exist_ok=True)
        for name in ("upper", "layer.tar", "step.json"):
            if (work / name).exists():
                (work / name).rename(record / name)
        (record / ".complete").write_text(instruction.text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _say(log: Path, line: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"\n=== {dt.datetime.now():%H:%M:%S} {line}\n")


def _overlay_mount(lowers: list[Path], work: Path) -> str:
    # lowerdir lists the topmost layer first; redirect_dir/metacopy off so that the
    # upper directory alone always describes the change (no references into lower layers)
    options = ",".join(
        [
            "lowerdir=" + ":".join(str(p) for p in reversed(lowers)),
            f"upperdir={work / 'upper'}",
            f"workdir={work / 'work'}",
            "redirect_dir=off",
            "metacopy=off",
            "index=off",
            "xino=off",
        ]
    )
    return (
        "set -eu\n"
        f"M={shlex.quote(str(work / 'merged'))}\n"
        f'mount -t overlay overlay -o {shlex.quote(options)} "$M"\n'
    )


_SANDBOX = """# a minimal /dev, /proc of this PID namespace, the host's DNS and build settings
mount -t proc proc "$M/proc"
mount -t tmpfs -o mode=755,nosuid tmpfs "$M/dev"
for node in null zero full random urandom tty; do
  touch "$M/dev/$node" && mount --bind "/dev/$node" "$M/dev/$node"
done
mkdir "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$M/dev/shm"
ln -s /proc/self/fd "$M/dev/fd"
ln -s /proc/self/fd/0 "$M/dev/stdin"
ln -s /proc/self/fd/1 "$M/dev/stdout"
ln -s /proc/self/fd/2 "$M/dev/stderr"
for file in resolv.conf hosts; do
  if [ -f "$M/etc/$file" ] && [ ! -L "$M/etc/$file" ]; then
    mount --bind "/etc/$file" "$M/etc/$file" && mount -o remount,bind,ro "$M/etc/$file"
  fi
done
made_build_dir=0
if [ ! -d "$M/run/fink-build" ]; then mkdir -p "$M/run/fink-build"; made_build_dir=1; fi
mount --bind "$BUILD" "$M/run/fink-build" && mount -o remount,bind,ro "$M/run/fink-build"
"""

_UNSANDBOX = """umount "$M/run/fink-build"
if [ "$made_build_dir" = 1 ]; then rmdir "$M/run/fink-build"; fi
for file in resolv.conf hosts; do umount "$M/etc/$file" 2>/dev/null || true; done
umount -R "$M/dev" "$M/proc"
"""


def _run_script(step: Step, lowers: list[Path], work: Path) -> str:
    state = step.state
    environment = buildenv.from_host(work / "settings")
    environment.populate(work / "build")
    uid, gid, home = _resolve_user(state.user, lowers)
    variables = {"HOME": home, **state.variables(), **environment.variables}
    command = _as_list(step.instruction)
    argv = [
        "chroot",
        f"--userspec={uid}:{gid}",
        '"$M"',
        "/usr/bin/env",
        "-i",
        *[shlex.quote(f"{k}={v}") for k, v in variables.items()],
        "/bin/sh",
        "-c",
        shlex.quote('cd "$1" && shift && exec "$@"'),
        "sh",
        shlex.quote(state.workdir),
        *[shlex.quote(a) for a in command],
    ]
    return (
        f"BUILD={shlex.quote(str(work / 'build'))}\n"
        + _SANDBOX
        + "set +e\n"
        + " ".join(argv)
        + "\nstatus=$?\nset -e\n"
        + _UNSANDBOX
        + "exit $status\n"
    )


def _copy_script(work: Path) -> str:
    stage = shlex.quote(str(work / "stage"))
    # --no-overwrite-dir: directories that exist keep their owner, mode and times
    return f'tar -C {stage} -cf - . | tar -C "$M" -xpf - --no-overwrite-dir\n'


def _stage_copy(step: Step, stage: Path) -> None:
    """Lay the COPY's files out under stage as they will be in the image, owned as asked."""
    stage.mkdir()
    uid, gid = step.copy_owner
    for copy in step.copies:
        target = stage / copy.destination.lstrip("/")
        for parent in reversed(target.relative_to(stage).parents[:-1]):
            directory = stage / parent
            if not directory.exists():
                directory.mkdir(mode=0o755)
                directory.chmod(0o755)
                os.chown(directory, 0, 0)
        if copy.kind == "dir":
            target.mkdir(exist_ok=True)
            shutil.copystat(copy.source, target)
        elif copy.kind == "link":
            target.symlink_to(os.readlink(copy.source))
        else:
            shutil.copy2(copy.source, target)
        if step.copy_mode is not None and copy.kind != "link":
            target.chmod(step.copy_mode)
        os.chown(target, uid, gid, follow_symlinks=False)


def _in_namespace(script: Path, log: Path) -> int:
    with log.open("ab") as out:
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "--uts",
                "--ipc",
                "sh",
                str(script),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        ).returncode


def read_image_file(lowers: list[Path], relative: str) -> str | None:
    """A file of the image being built, from the topmost layer that has it."""
    for layer in reversed(lowers):
        path = layer / relative
        if path.is_file():
            return path.read_text(errors="replace")
    return None


def _resolve_user(user: str, lowers: list[Path]) -> tuple[int, int, str]:
    """USER as numeric ids and a home directory, from the image's own /etc/passwd."""
    name, _, group = (user or "root").partition(":")
    passwd = read_image_file(lowers, "etc/passwd") or ""
    entries = [line.split(":") for line in passwd.splitlines() if line.count(":") >= 6]
    match = next((e for e in entries if e[0] == name or e[2] == name), None)
    if match is None and not name.isdigit():
        raise BuildError(f"USER {user}: no such user in the image's /etc/passwd")
    uid = int(match[2]) if match else int(name)
    gid = int(match[3]) if match else uid
    if group:
        groups = read_image_file(lowers, "etc/group") or ""
        found = [g.split(":") for g in groups.splitlines() if g.split(":")[0] == group]
        gid = int(found[0][2]) if found else int(group)
    home = match[5] if match else "/"
    return uid, gid, home


# ---------------------------------------------------------------- the image


@dataclass(frozen=True)
class ImageRecord:
    """A built image: its documents and where its layers are (under the cache)."""

    directory: Path

    def read(self, name: str) -> dict[str, Any]:
        return json.loads((self.directory / name).read_text())

    @property
    def manifest_digest(self) -> str:
        return self.read("image.json")["manifest_digest"]

    @property
    def size(self) -> int:
        return sum(layer["size"] for layer in self.read("manifest.json")["layers"])

    def blobs(self) -> list[Blob]:
        info = self.read("image.json")
        blobs = [
            Blob(layer["digest"], layer["size"], LAYER_MEDIA_TYPE, path=Path(layer["path"]))
            for layer in info["layers"]
        ]
        for name, media_type in (
            ("config.json", CONFIG_MEDIA_TYPE),
            ("manifest.json", MANIFEST_MEDIA_TYPE),
        ):
            data = (self.directory / name).read_bytes()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            blobs.append(Blob(digest, len(data), media_type, data=data))
        return blobs

    def index(self) -> dict[str, Any]:
        return self.read("index.json")


def record_dir(plan_: Plan, cache: Path) -> Path:
    return cache / "images" / "images" / f"{plan_.spec.name}-{plan_.key[:16]}"


def assemble(plan_: Plan, cache: Path) -> ImageRecord:
    """Write the image's config, manifest and index once its steps are built."""
    directory = record_dir(plan_, cache)
    if (directory / ".complete").exists():
        return ImageRecord(directory)
    base = plan_.base
    layers = [
        {
            "digest": base.digest(cache),
            "size": base.layer(cache).stat().st_size,
            "path": str(base.layer(cache)),
        }
    ]
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    history: list[dict[str, Any]] = [
        {
            "created": created,
            "created_by": f"debootstrap --variant=minbase {base.suite} {base.archive} "
            "(the local builder's FROM)",
        }
    ]
    for step in plan_.steps:
        entry: dict[str, Any] = {"created": created, "created_by": step.instruction.text}
        layer = step_layer(step, cache) if step.makes_layer else None
        if layer is None or layer.empty:
            entry["empty_layer"] = True
        else:
            layers.append(
                {
                    "digest": layer.digest,
                    "size": layer.size,
                    "path": str(step.record(cache) / "layer.tar"),
                }
            )
        history.append(entry)
    state = plan_.final
    config: dict[str, Any] = {
        "Env": [f"{k}={v}" for k, v in state.env.items()],
        "WorkingDir": state.workdir,
    }
    if state.user:
        config["User"] = state.user
    if state.entrypoint is not None:
        config["Entrypoint"] = state.entrypoint
    if state.cmd is not None:
        config["Cmd"] = state.cmd
    if state.labels:
        config["Labels"] = state.labels
    if state.exposed:
        config["ExposedPorts"] = state.exposed
    document = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        "history": history,
    }
    blobs = [
        Blob(layer["digest"], layer["size"], LAYER_MEDIA_TYPE, path=Path(layer["path"]))
        for layer in layers
    ]
    config_blob, manifest_blob, index = image_documents(document, blobs, plan_.spec.reference)
    work = Path(tempfile.mkdtemp(prefix=".image-", dir=directory.parent.parent))
    assert config_blob.data is not None and manifest_blob.data is not None
    (work / "config.json").write_bytes(config_blob.data)
    (work / "manifest.json").write_bytes(manifest_blob.data)
    (work / "index.json").write_text(json.dumps(index, indent=1))
    (work / "image.json").write_text(
        json.dumps(
            {
                "reference": plan_.spec.reference,
                "containerfile": str(plan_.spec.containerfile),
                "manifest_digest": manifest_blob.digest,
                "layers": layers,
                "executed": [
                    {"line": s.instruction.line, "instruction": s.instruction.text}
                    for s in plan_.steps
                ],
            },
            indent=1,
        )
    )
    (work / ".complete").write_text(plan_.key)
    directory.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(directory, ignore_errors=True)
    work.rename(directory)
    return ImageRecord(directory)

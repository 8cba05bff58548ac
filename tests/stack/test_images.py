"""The images the stack runs are the Containerfiles users build with Docker, built locally."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tarfile
import tomllib
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from podrun import run_pod

from fink_stack import artefacts, containerfile, imagebuild, images, node
from fink_stack.endpoints import Endpoints
from fink_stack.ignorefile import Ignore, read_rules
from fink_stack.layout import Layout
from fink_stack.ocilayout import write_layer

REPOSITORY = Path(__file__).resolve().parents[2]


def _as_written(path: Path) -> list[str]:
    """The file's instructions read plainly: continuations joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        instructions.append(pending + stripped)
        pending = ""
    return instructions


def _copy_of_the_context(tmp_path: Path) -> Path:
    """What the images' COPY steps read, copied out of the repository."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md", "images", "core", "operator", "pipeline"):
        origin = REPOSITORY / name
        if origin.is_dir():
            shutil.copytree(origin, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / name)
    return context


# ---------------------------------------------------------------- reading the files


@pytest.mark.parametrize("spec", images.PROJECT_IMAGES, ids=lambda s: s.name)
def test_the_builder_reads_each_containerfile_as_written(spec: imagebuild.ImageSpec) -> None:
    parsed = containerfile.parse_file(spec.containerfile)
    assert [i.text for i in parsed] == _as_written(spec.containerfile)
    assert parsed[0].text == "FROM debian:bookworm-slim"


def test_the_project_layers_come_last_and_copy_only_the_packages() -> None:
    steps = imagebuild.plan(images.PIPELINE).steps
    copies = [s.instruction.arguments for s in steps if s.instruction.keyword == "COPY"]
    assert copies[-4:] == [
        "README.md /src/README.md",
        "core /src/core",
        "operator /src/operator",
        "pipeline /src/pipeline",
    ]
    sources = {c.source.relative_to(REPOSITORY).parts[0] for s in steps for c in s.copies}
    assert sources == {"pyproject.toml", "README.md", "images", "core", "operator", "pipeline"}
    copied = [c.source.name for s in steps for c in s.copies]
    assert "__pycache__" not in copied and not any(n.endswith(".pyc") for n in copied)


def test_changing_the_source_changes_only_the_last_steps(tmp_path: Path) -> None:
    context = _copy_of_the_context(tmp_path)
    spec = imagebuild.ImageSpec(
        "pipeline", "x/pipeline:t", context / "images/pipeline/Containerfile", context
    )
    before = imagebuild.plan(spec).steps
    (context / "pipeline" / "fink_pipeline" / "__init__.py").write_text("# changed\n")
    after = imagebuild.plan(spec).steps
    changed = [a.instruction.text for a, b in zip(after, before, strict=True) if a.key != b.key]
    first = changed[0]
    assert first == "COPY pipeline /src/pipeline"
    assert changed == [
        s.instruction.text for s in after[[s.instruction.text for s in after].index(first) :]
    ]


@pytest.mark.stack
def test_a_source_change_rebuilds_only_the_last_layers(stack: Endpoints, tmp_path: Path) -> None:
    """Build the pipeline image from a copy of the repository, change one source file, rebuild."""
    layout = Layout.default()
    context = _copy_of_the_context(tmp_path)
    spec = imagebuild.ImageSpec(
        "pipeline-variant", "x/pipeline:t", context / "images/pipeline/Containerfile", context
    )
    imagebuild.build(imagebuild.plan(spec), layout.cache, tmp_path / "first.log")  # as it is
    # new content every run, so the steps after it really run, and the ones before are reused
    mark = uuid.uuid4().hex
    (context / "pipeline" / "fink_pipeline" / "rebuilt.py").write_text(f"MARK = {mark!r}\n")
    plan = imagebuild.plan(spec)
    log = tmp_path / "second.log"
    imagebuild.build(plan, layout.cache, log)
    ran = [
        line.split(": ", 1)[1]
        for line in log.read_text().splitlines()
        if line.startswith("=== ") and "layer of" not in line
    ]
    assert ran == [
        "COPY pipeline /src/pipeline",
        "RUN cp -r /src /tmp/fink-src && pip install --no-cache-dir --no-deps /tmp/fink-src "
        "&& rm -rf /tmp/fink-src",
        "WORKDIR /home/fink",
    ]
    record = imagebuild.assemble(plan, layout.cache)
    # the source layer holds the change (the last layer is the pip install of it)
    assert mark.encode() in (Path(record.read("image.json")["layers"][-2]["path"])).read_bytes()


def test_dockerignore_rules_follow_docker() -> None:
    ignore = Ignore(read_rules("**/__pycache__\n*.md\n!README.md\nbuild\n!build/keep"))
    assert ignore.excluded("core/fink_core/__pycache__/x.pyc")
    assert ignore.excluded("NOTES.md") and not ignore.excluded("README.md")
    assert not ignore.excluded("docs/stack.md")  # `*` stays within one path element
    assert ignore.excluded("build/out.o") and not ignore.excluded("build/keep")


def test_substitution_and_arguments_follow_docker() -> None:
    variables = {"A": "1", "EMPTY": ""}
    assert containerfile.substitute("$A ${A} ${B:-two} ${A:+set} ${EMPTY:-d} \\$A", variables) == (
        "1 1 two set d $A"
    )
    assert containerfile.arg_default('X="a b"', {}) == {"X": "a b"}
    assert containerfile.key_values('K="v 1" L=$A', variables, "ENV") == [("K", "v 1"), ("L", "1")]
    with pytest.raises(containerfile.ContainerfileError, match="not supported"):
        containerfile.parse("FROM debian:bookworm-slim\nADD x /x\n")


def test_overlay_deletions_become_oci_whiteouts(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making whiteout devices needs root")
    upper = tmp_path / "upper"
    (upper / "etc" / "opaque").mkdir(parents=True)
    (upper / "etc" / "new.conf").write_text("x\n")
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.setxattr(upper / "etc" / "opaque", "trusted.overlay.opaque", b"y")
    digest, size = write_layer(upper, tmp_path / "layer.tar")
    assert size == (tmp_path / "layer.tar").stat().st_size and digest.startswith("sha256:")
    with tarfile.open(tmp_path / "layer.tar") as tar:
        names = tar.getnames()
    assert names == ["etc", "etc/.wh.gone", "etc/new.conf", "etc/opaque", "etc/opaque/.wh..wh..opq"]


# ---------------------------------------------------------------- the built images


@pytest.mark.stack
@pytest.mark.parametrize("image", images.IMAGE_ARTEFACTS, ids=lambda i: i.spec.name)
def test_the_node_runs_exactly_the_image_built_from_the_containerfile(
    stack: Endpoints, image: images.ContainerImage
) -> None:
    layout = Layout.default()
    containerd = node.containerd_client(layout)
    digest = containerd.image_digest(image.spec.reference)
    assert digest, f"{image.spec.reference} is not on the node"
    record = images.record_of(layout.cache, image.spec, digest)
    assert record is not None, "the node's image was not made by the local builder"
    info = record.read("image.json")
    executed = [step["instruction"] for step in info["executed"]]
    assert executed == _as_written(image.spec.containerfile)[1:]  # everything after FROM
    history = [h["created_by"] for h in record.read("config.json")["history"]]
    assert history[1:] == executed
    # containerd holds this very manifest (content-addressed: same digest, same layers)
    assert record.manifest_digest == digest
    size = record.size
    print(f"{image.spec.short_reference}: {size / 1e9:.2f} GB")
    assert size < (2.5e9 if image.spec.name == "pipeline" else 0.6e9)


@pytest.mark.stack
def test_the_pipeline_image_holds_the_project_pinned_pyspark_and_the_stack_connectors(
    stack: Endpoints, kube: client.ApiClient, namespace: str
) -> None:
    code = """
import importlib.metadata as m, json, os, re, pyspark
jars = sorted(os.listdir(os.path.join(os.path.dirname(pyspark.__file__), 'jars')))
name = lambda d: re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()
print(json.dumps({'dists': {name(d): d.version for d in m.distributions()}, 'jars': jars}))
"""
    assert stack.pods is not None
    run = run_pod(kube, namespace, "contents", stack.pods.pipeline_image, ["python", "-c", code])
    assert run.phase == "Succeeded", run.logs
    found = json.loads(run.logs.strip().splitlines()[-1])
    pins = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "pyspark==" + found["dists"]["pyspark"] in pins
    assert found["dists"]["fink-k8s"] == "0.1.0"
    for package in ("fink-science", "fink-filters", "confluent-kafka", "happybase", "astropy"):
        assert package in found["dists"], package
    connectors = artefacts.spark_connectors()
    assert connectors.is_ready(Layout.default().cache)
    expected = {jar.name for jar in connectors.jars(Layout.default().cache)}
    assert expected, "the stack's Spark connectors are not built"
    assert expected <= set(found["jars"]), expected - set(found["jars"])


@pytest.mark.stack
def test_the_operator_image_is_python_only_with_pandas_for_the_filter_sandbox(
    stack: Endpoints, kube: client.ApiClient, namespace: str
) -> None:
    code = """
import importlib.metadata as m, importlib.util, shutil
import fink_operator.cli
print('operator', all(importlib.util.find_spec(p) for p in ('kopf', 'kubernetes', 'confluent_kafka', 'happybase', 'jinja2', 'prometheus_client', 'yaml')))
print('absent', [p for p in ('pyspark', 'fink_pipeline') if importlib.util.find_spec(p)], shutil.which('java'))
from fink_operator import filter_checks
code = 'import pandas as pd\\ndef bright(magpsf: pd.Series) -> pd.Series:\\n    return magpsf < 18\\n'
print('dry run', filter_checks.dry_run(code, 'bright', 'ztf', {'magpsf': 'double'}))
"""
    assert stack.pods is not None
    run = run_pod(kube, namespace, "operator", stack.pods.operator_image, ["python", "-c", code])
    assert run.phase == "Succeeded", run.logs
    assert "operator True" in run.logs
    assert "absent [] None" in run.logs
    # a ScienceFilter's dry run: the sandbox's pandas is in the image, Spark is not
    assert re.search(r"dry run \d+ of 1000 passed", run.logs), run.logs

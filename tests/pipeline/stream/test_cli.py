"""`fink-pipeline` as a user runs it: the commands' output, exit codes and messages.

docs/pipeline.md promises: 0 done, 1 failed while running (the end-to-end
failure tests), 2 the input is wrong, 3 not ready, every error one line and
never a traceback, `-f -` reading the document from stdin. Each promise is
checked here through the real command, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import happybase
import pytest
import yaml
from confluent_kafka.admin import AdminClient, NewTopic
from stream_world import FINK_PIPELINE, World

from fink_core.science.catalogue import SHIPPED
from fink_core.spec import parse_pipeline
from fink_pipeline.science import plan_science
from fink_pipeline.science.registry import live_catalogue
from fink_pipeline.stream.enriched import enriched_schema
from fink_pipeline.stream.science_step import ScienceStep
from fink_stack.endpoints import Endpoints

# addresses nothing listens on: these commands must fail or finish before connecting
OFFLINE = Endpoints(Path("/nonexistent"), "127.0.0.1:9", "127.0.0.1", 9, ())


@pytest.fixture
def offline(unique_name: str, tmp_path: Path) -> World:
    return World(stack=OFFLINE, name=unique_name, directory=tmp_path)


def command(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Done:
    done = subprocess.run(
        [FINK_PIPELINE, *args], input=stdin, capture_output=True, text=True, timeout=120, env=env
    )
    return Done(done.returncode, done.stdout, done.stderr)


class Done:
    """What a finished command printed, and how it exited."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def error(self) -> str:
        """The one error line; fails if there is a traceback or more than one line."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if " INFO " not in line and " WARNING " not in line]
        assert len(errors) == 1, self.stderr
        return errors[0]


def test_validate_shows_what_the_pipeline_will_run_and_write(offline: World) -> None:
    path = offline.pipeline_file()
    done = command("validate", "-f", str(path))
    assert done.code == 0, done.stderr
    name, archive = offline.name, offline.archive
    assert done.stdout.splitlines() == [
        f"pipeline tests/{name} (ztf) is valid",
        f"  source: {offline.source}",
        "  module quality_cuts {'minRb': 0.55} -> quality_ok",
        "  module lightcurve_features  -> n_detections, color_gr, rise_rate, decline_rate, "
        "mag_change, mag_rate, days_since_first",
        "  module solar_system {'maxDistanceArcsec': 5.0} -> sso_flag, sso_name, roid",
        "  module crossmatch {'catalogue': '', 'radiusArcsec': 1.5} -> xm_name, xm_type, "
        "xm_distance_arcsec",
        "  module snia_score  -> snia_score",
        *(f"  filter {f} -> topic {offline.filter_topic(f)}" for f in offline.filters),
        f"  dead letters -> topic {offline.dead_letter_topic}",
        f"  HBase table {offline.table} (families i, d; a cell per field)",
        f"  Parquet archive {archive}/night=YYYYMMDD/pipeline=tests.{name}/batch=ID/",
    ]
    # -f - reads the same document from stdin (kubectl get bp NAME -o yaml | ...)
    piped = command("validate", "-f", "-", stdin=path.read_text())
    assert (piped.code, piped.stdout) == (0, done.stdout)


def test_schema_prints_the_enriched_alerts_avro_schema(offline: World) -> None:
    plan = plan_science(parse_pipeline(offline.document()))
    wanted = enriched_schema("ztf", ScienceStep(plan).alert_columns)
    done = command("schema", "-f", str(offline.pipeline_file()))
    assert done.code == 0 and json.loads(done.stdout) == wanted
    piped = command("schema", "-f", "-", stdin=yaml.safe_dump(offline.document()))
    assert piped.code == 0 and json.loads(piped.stdout) == wanted


def test_catalogue_prints_the_science_catalogue_the_operator_ships() -> None:
    done = command("catalogue")
    assert done.code == 0 and done.stdout == live_catalogue().render()
    assert json.loads(done.stdout) == json.loads(SHIPPED.read_text())


def test_wrong_input_exits_2_with_one_line(offline: World, tmp_path: Path) -> None:
    missing = command("validate", "-f", str(tmp_path / "nowhere.yaml"))
    assert missing.code == 2
    assert missing.error() == (
        f"fink-pipeline: cannot read {tmp_path / 'nowhere.yaml'}: No such file or directory"
    )

    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: BrokerPipeline\nspec:\n  survey: ztf\n   modules: []\n")
    bad_yaml = command("run", "-f", str(broken))
    assert bad_yaml.code == 2
    assert bad_yaml.error().startswith(f"fink-pipeline: {broken} is not valid YAML (line 4, column")

    document = offline.document()
    document["spec"]["modules"][0]["name"] = "quality_cut"
    invalid = command("run", "-f", "-", stdin=yaml.safe_dump(document))
    assert invalid.code == 2
    assert invalid.error().startswith(
        "-: invalid pipeline: spec.modules[0].name: unknown science module 'quality_cut'; "
        "known modules: "
    )

    portless = offline.document()
    portless["spec"]["source"]["kafka"]["bootstrapServers"] = "kafka"
    no_port = command("run", "-f", "-", stdin=yaml.safe_dump(portless))
    assert no_port.code == 2
    assert no_port.error() == (
        "-: invalid pipeline: spec.source.kafka.bootstrapServers: 'kafka' has no port; "
        "write it as host:port (e.g. kafka:9092)"
    )
    flag = command("run", "-f", str(offline.pipeline_file()), "--hbase-thrift", "hbase")
    assert flag.code == 2
    assert flag.error() == (
        "fink-pipeline: HBase Thrift: 'hbase' has no port; write it as host:port (e.g. hbase:9090)"
    )

    secret = offline.document()
    secret["spec"]["source"]["kafka"]["credentialsSecretRef"] = {"name": "creds"}
    (tmp_path / "refs" / "secrets" / "creds").mkdir(parents=True)
    (tmp_path / "refs" / "secrets" / "creds" / "ssl.keystore.location").write_text("/etc/k")
    refused = command(
        "run", "-f", "-", "--references", str(tmp_path / "refs"), stdin=yaml.safe_dump(secret)
    )
    assert refused.code == 2
    assert refused.error().startswith(
        "fink-pipeline: Secret creds: key(s) ssl.keystore.location not allowed"
    )

    no_kubeconfig = command(
        "run", "-f", str(offline.pipeline_file()), "--kubeconfig", str(tmp_path / "none")
    )
    assert no_kubeconfig.code == 2
    assert no_kubeconfig.error().startswith(
        f"fink-pipeline: cannot use kubeconfig {tmp_path / 'none'}: "
    )


def test_an_unreachable_reference_exits_3_with_one_line(offline: World, tmp_path: Path) -> None:
    document = offline.document()
    document["spec"]["sinks"]["connectionsFrom"] = {"configMapRef": {"name": "conns"}}
    text = yaml.safe_dump(document)
    absent = command("run", "-f", "-", "--references", str(tmp_path), stdin=text)
    assert absent.code == 3
    assert absent.error() == (
        "fink-pipeline: not ready: ConfigMap 'conns' in namespace tests not found: "
        "create it, or remove the reference from the spec"
    )
    kubeconfig = tmp_path / "dead.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    dead = command("run", "-f", "-", "--kubeconfig", str(kubeconfig), stdin=text)
    assert dead.code == 3
    assert dead.error().startswith(
        "fink-pipeline: not ready: the Kubernetes API at https://127.0.0.1:9 could not be reached: "
    )


@pytest.mark.stack
def test_missing_topics_tables_or_servers_exit_3_with_one_line(
    stack: Endpoints, unique_name: str, tmp_path: Path
) -> None:
    world = World(stack=stack, name=unique_name, directory=tmp_path)
    env = {**os.environ, **stack.environment()}
    path = str(world.pipeline_file())

    no_source = command("run", "-f", path, env=env)
    assert no_source.code == 3
    assert no_source.error() == (
        f"fink-pipeline: cannot start {world.name}: the source topic {world.source} does not "
        f"exist in Kafka at {stack.kafka_bootstrap}: produce alerts into it first (e.g. "
        f"fink-alerts produce --topic {world.source} --create-topic)"
    )

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(world.source, 1, 1)])[world.source].result(30)
    no_sinks = command("run", "-f", path, env=env)
    assert no_sinks.code == 3
    outputs = [*(world.filter_topic(f) for f in world.filters), world.dead_letter_topic]
    sinks = ", ".join(sorted(outputs))
    assert no_sinks.error() == (
        f"fink-pipeline: cannot start {world.name}: topic(s) {sinks} do not exist in Kafka at "
        f"{stack.kafka_bootstrap}: apply the BrokerPipeline with the operator running, or pass "
        "--create-missing"
    )

    for future in admin.create_topics([NewTopic(t, 2, 1) for t in outputs]).values():
        future.result(30)
    no_table = command("run", "-f", path, env=env)
    assert no_table.code == 3
    assert no_table.error().startswith(
        f"fink-pipeline: cannot start {world.name}: HBase table {world.table} does not exist"
    )
    assert no_table.error().endswith("or pass --create-missing")

    # a table made before cutouts were stored lacks their family: refused, then added
    hbase = happybase.Connection(stack.hbase_thrift_host, stack.hbase_thrift_port)
    hbase.create_table(world.table, {"i": {}, "d": {}})
    hbase.close()
    world.cutouts = "store"
    path = str(world.pipeline_file())
    no_family = command("run", "-f", path, env=env)
    assert no_family.code == 3
    assert no_family.error() == (
        f"fink-pipeline: cannot start {world.name}: HBase table {world.table} has no column "
        "family cutouts, which the pipeline writes: apply the BrokerPipeline with the operator "
        "running, or pass --create-missing"
    )
    added = command("run", "-f", path, "--create-missing", "--until-idle", "1", env=env)
    assert added.code == 0, added.stderr
    assert f"{world.table}:cutouts" in added.stdout + added.stderr
    assert world.hbase_families() == {"i", "d", "cutouts"}

    # that table, made without a layout, holds cells: packed rows are refused, whatever
    # the flags, as nothing can mend it but the spec
    world.layout = "packed"
    path = str(world.pipeline_file())
    other_layout = command("run", "-f", path, "--create-missing", env=env)
    assert other_layout.code == 3
    assert other_layout.error() == (
        f"fink-pipeline: cannot start {world.name}: HBase table {world.table} holds its rows "
        "in the 'columns' layout and the spec asks for 'packed': rows of both in one table "
        "would mislead every reader, so nothing is written; set spec.sinks.hbase.layout to "
        "columns, or name a new table"
    )
    world.layout = "columns"
    path = str(world.pipeline_file())

    unreachable = command("run", "-f", path, "--bootstrap-servers", "127.0.0.1:9", env=env)
    assert unreachable.code == 3
    assert unreachable.error().startswith(
        f"fink-pipeline: cannot start {world.name}: Kafka at 127.0.0.1:9 could not be reached"
    )

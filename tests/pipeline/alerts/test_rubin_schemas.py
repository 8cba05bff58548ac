"""Rubin alerts as Rubin publishes them: every official schema version, by schema id.

The schemas and Rubin's own sample alerts come from lsst-alert-packet; nothing
here is a copy of ours.
"""

from __future__ import annotations

import io
import json
import socket
import struct
from pathlib import Path

import fastavro
import numpy as np
import pytest

from fink_pipeline.alerts import codec, rubin_schemas
from fink_pipeline.alerts.columns import columns_for
from fink_pipeline.alerts.generator import generate_alerts
from fink_pipeline.alerts.lsst_records import in_version
from fink_pipeline.alerts.registry import RegistryUnavailable, registry_at
from fink_pipeline.alerts.survey_encoder import SurveyEncoder
from fink_stack.endpoints import Endpoints

VERSIONS = rubin_schemas.versions()


def _wire(schema_id: int, version: tuple[int, int], record: dict) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, rubin_schemas.parsed_writer_schema(version), record)
    return struct.pack(">bI", 0, schema_id) + body.getvalue()


def _rubin_samples(version: tuple[int, int]) -> list[dict]:
    """Rubin's own sample alerts shipped with a version (Avro container files)."""
    folder = rubin_schemas.schema_root() / str(version[0]) / str(version[1]) / "sample_data"
    records: list[dict] = []
    for path in sorted(folder.glob("*.avro")) if folder.exists() else []:
        with Path(path).open("rb") as handle:
            records.extend(fastavro.reader(handle))
    return records


def test_every_version_the_package_ships_is_known_with_its_official_id() -> None:
    assert len(VERSIONS) >= 15 and VERSIONS[0] == (3, 0)
    assert rubin_schemas.latest() == VERSIONS[-1] == (11, 1)
    assert rubin_schemas.official_id((7, 4)) == 704
    assert rubin_schemas.official_id((11, 1)) == 1101
    assert rubin_schemas.version_of_id(1101) == (11, 1)
    assert rubin_schemas.version_of_id(705) is None
    with pytest.raises(ValueError, match=r"it ships 3\.0, 4\.0"):
        rubin_schemas.parse_version("7.9")


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v[0]}_{v[1]}")
def test_rubins_own_sample_alert_of_each_version_decodes(version: tuple[int, int]) -> None:
    samples = _rubin_samples(version)
    if not samples:
        pytest.skip(f"lsst-alert-packet ships no sample alert for {version}")
    data = [_wire(rubin_schemas.official_id(version), version, r) for r in samples]
    decoded = codec.decode_batch(data, "lsst")
    assert decoded.rejects == []
    source = samples[0]["diaSource"]
    row = decoded.frame.iloc[0]
    assert row["diaSourceId"] == source["diaSourceId"]
    dec = source.get("dec", source.get("decl"))
    assert row["dec"] == pytest.approx(dec)
    band = source.get("band", source.get("filterName"))
    assert row["band"] == band
    flux = source.get("psfFlux", source.get("psFlux"))
    assert row["psfFlux"] == pytest.approx(flux)
    history = samples[0].get("prvDiaSources") or []
    assert len(row["prv_psfFlux"]) == len(history)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v[0]}_{v[1]}")
def test_generated_alerts_fit_each_official_schema_and_decode_alike(
    version: tuple[int, int],
) -> None:
    alerts = generate_alerts(20, "lsst", seed=4)
    latest = codec.decode_batch([codec.encode(a, "lsst") for a in alerts], "lsst").frame
    records = [in_version(a, version) for a in alerts]
    schema = rubin_schemas.parsed_writer_schema(version)
    assert all(fastavro.validation.validate(r, schema) for r in records)
    older = codec.decode_batch(
        [codec.encode(r, "lsst", schema_version=version) for r in records], "lsst"
    )
    assert older.rejects == []
    # what every version carries reads the same; reliability came with 5.0
    for name in ("diaSourceId", "diaObjectId", "band", "ra", "dec", "midpointMjdTai"):
        assert latest[name].tolist() == older.frame[name].tolist(), name
    np.testing.assert_allclose(
        latest["psfFlux"].to_numpy(), older.frame["psfFlux"].to_numpy(), rtol=1e-6
    )
    assert [len(h) for h in latest["prv_psfFlux"]] == [len(h) for h in older.frame["prv_psfFlux"]]


def test_one_stream_mixes_versions_alert_by_alert() -> None:
    alerts = generate_alerts(30, "lsst", seed=9)
    encoder = SurveyEncoder("lsst", ["11.1", "7.4", "3.0"])
    data = [encoder.encode(a) for a in alerts]
    ids = [struct.unpack(">I", d[1:5])[0] for d in data]
    assert ids[:6] == [1101, 704, 300, 1101, 704, 300]
    decoded = codec.decode_batch(data, "lsst")
    assert decoded.rejects == []
    assert decoded.frame["diaSourceId"].tolist() == [a["diaSourceId"] for a in alerts]


def test_decoding_reads_only_the_columns_not_the_cutouts() -> None:
    """The projection skips everything but the pipeline's columns (cutouts included)."""
    alert = generate_alerts(1, "lsst", seed=2)[0]
    alert["cutoutDifference"] = b"\x1f\x8b" + b"x" * 50_000
    data = codec.encode(alert, "lsst")
    writer = rubin_schemas.writer_schema(rubin_schemas.latest())
    source_fields = tuple(c for c in columns_for("lsst") if not c.startswith("prv_"))
    reader = rubin_schemas.projection(writer, source_fields)
    assert [f["name"] for f in reader["fields"]] == ["diaSource", "prvDiaSources"]
    assert [f["name"] for f in reader["fields"][0]["type"]["fields"]] == list(source_fields)
    assert codec.decode_batch([data], "lsst").rejects == []


def test_an_unknown_id_or_a_non_alert_schema_is_a_wrong_schema_reject() -> None:
    alert = generate_alerts(1, "lsst", seed=3)[0]
    unknown = codec.encode(alert, "lsst", schema_id=705)
    rejects = codec.decode_batch([unknown], "lsst").rejects
    assert rejects[0].reason.startswith("wrong-schema: unknown schema id 705")
    # a diaSource written with the 7.4 schema under 11.1's id: the body does not fit
    mislabelled = _wire(1101, (7, 4), in_version(alert, (7, 4)))
    assert codec.decode_batch([mislabelled], "lsst").rejects[0].category in (
        "not-avro",
        "missing-field",
    )


def test_the_schema_command_prints_the_latest_official_schema() -> None:
    printed = json.loads(codec.schema_json("lsst"))
    assert printed["name"] == "lsst.v11_1.alert"
    assert printed == rubin_schemas.writer_schema((11, 1))


# --------------------------------------------------------------------------- with a registry


def test_ids_from_a_real_registry_resolve_and_strangers_are_refused(
    stack: Endpoints, unique_name: str
) -> None:
    """The stack's registry (Apicurio, Confluent API): ids it gave decode, others are refused."""
    registry = stack.schema_registry
    assert registry, "the stack's schema registry (component registry) is needed"
    alerts = generate_alerts(12, "lsst", seed=5)
    encoder = SurveyEncoder("lsst", ["11.1", "9.0", "7.4", "3.0"], registry, subject=unique_name)
    assert len(set(encoder.ids.values())) == 4
    data = [encoder.encode(a) for a in alerts]
    decoded = codec.decode_batch(data, "lsst", registry)
    assert decoded.rejects == []
    assert decoded.frame["diaSourceId"].tolist() == [a["diaSourceId"] for a in alerts]

    weather = {
        "type": "record",
        "name": "reading",
        "namespace": f"weather.{unique_name.replace('-', '_')}",
        "fields": [{"name": "celsius", "type": "double"}],
    }
    weather_id = registry_at(registry).register(weather, subject=f"{unique_name}-weather")
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(weather), {"celsius": 9.0})
    stranger = struct.pack(">bI", 0, weather_id) + body.getvalue()
    unknown = struct.pack(">bI", 0, 2_000_000_000) + data[0][5:]
    reasons = [r.reason for r in codec.decode_batch([stranger, unknown], "lsst", registry).rejects]
    assert reasons[0] == (
        f"wrong-schema: schema id {weather_id} is weather.{unique_name.replace('-', '_')}"
        ".reading, not a Rubin alert"
    )
    assert reasons[1] == "wrong-schema: schema id 2000000000 is not in the registry"


def test_a_registry_that_does_not_answer_fails_the_batch_instead_of_refusing_alerts() -> None:
    """No alert is sent to the dead letters because the registry is down: the batch fails."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = codec.encode(generate_alerts(1, "lsst", seed=6)[0], "lsst", schema_id=424242)
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        codec.decode_batch([data], "lsst", f"http://127.0.0.1:{port}/apis/ccompat/v7")

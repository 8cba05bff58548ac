"""Filter-topic messages in the layout fink-client reads: schema in the key, bare Avro value.

Astronomers read Fink's topics with fink-client (PyPI `fink-client`; read here
from 12.3.0, `fink_client/consumer.py` and `avro_utils.py`). It cannot read the
`fink` layout (enriched.py: Avro single-object encoding) because it never looks
for a header. What it decodes, exactly:

- **key**: the writer's Avro schema as JSON text (UTF-8). `AlertConsumer.process_message`
  does `fastavro.parse_schema(json.loads(key))` and decodes the value with it.
  Only when the key is not JSON does it fall back to `schema_path` (a local .avsc
  the user must hold) or, failing that, treat the key as a schema *version name*
  and download `distribution_schema_fink_ztf_<key>.avsc` from fink-client's
  GitHub: useless to us (and needs the internet). So the schema rides in every
  key, as Fink's own distribution does.
- **value**: one record, schemaless Avro binary (`fastavro.schemaless_reader`,
  after `seek(0)`): no marker bytes, no fingerprint, no container file.
- `poll(timeout)` returns `(topic, alert_dict, key_text)`, `(None, None, None)` on
  timeout; `consume(n, timeout)` a list of those tuples. Its config is
  `{"bootstrap.servers", "group.id"}` (plus `username`/`password` for Fink's
  SASL/SCRAM servers; without them it connects in PLAINTEXT, so a plain local
  Kafka works as it is), always with `auto.offset.reset=earliest`, and
  librdkafka's default `isolation.level=read_committed`: it sees only committed
  transactions, which is what the pipeline writes.

The consumer itself requires no field of the record. Its helpers do:
`poll_and_write` and `finkctl stream --save` name files from `objectId` and
`candid` (ZTF) or `diaSourceId` (LSST), top level; `finkctl stream --display` reads
`candidate.jd`, `candidate.magpsf` and `cdsxmatch` (ZTF), `diaSource.midpointMjdTai`
and `diaObject.diaObjectId` (else `mpc_orbits.designation`) (LSST); the Telegram
and Slack handlers read `cutoutScience`. So the record is laid out as Fink
distributes alerts, not flat as the `fink` layout:

- ZTF: `objectId`, `candid`, `candidate` (a record of every candidate field of
  the decoded alert, `candid` included), `prv_candidates` (null or an array of
  records `jd, fid, magpsf, sigmapsf, diffmaglim`; an upper limit has a null
  `magpsf`);
- LSST: `diaSourceId`, `diaSource` (every diaSource field of the decoded alert),
  `diaObject` (null, or a record with `diaObjectId`: a known asteroid's source
  has none), `prvDiaSources` (null or records `midpointMjdTai, band, psfFlux,
  psfFluxErr`);
- then every column the pipeline's modules added, top level as Fink puts its
  science outputs, and `fink_filters`, the filters the alert passed.

Not provided, so the matching fink-client helpers fail on our alerts: `cdsxmatch`
(Fink's SIMBAD cross-match; no module of ours writes it: `--display` of a ZTF
alert), `mpc_orbits` (`--display` of an LSST alert without diaObject), cutouts
(Telegram, Slack; filter topics never carry them).

**Partitions.** In the `fink` layout the key is the object's id, so librdkafka's
default partitioner (CRC32 of the key modulo the partitions) puts an object's
alerts in one partition, in order. Here the key is the schema, the same for every
message of a pipeline: left to the partitioner every message would land in one
partition. So the pipeline chooses the partition itself, with the very same
function of the object's id (`object_partition`): an object's alerts share a
partition, the same one as in the `fink` layout, and a topic's partitions all
work. The cost: the schema (a few KB of JSON) in every key (lz4 batches compress
the repetition), and such a topic must not be compacted (every key is equal;
the spec parser refuses `cleanup.policy: compact` with this layout).
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Mapping
from typing import Any

import fastavro

from fink_pipeline.alerts.columns import OBJECT_ID, columns_for
from fink_pipeline.stream.enriched import FILTERS_FIELD, avro_type

LAYOUT = "fink-client"

# per survey: the top-level ids, the nested record of the alert's own point, the
# history's record, and (LSST) the object record
_ZTF = {"top": ("objectId", "candid"), "point": "candidate", "history": "prv_candidates"}
_LSST = {"top": ("diaSourceId",), "point": "diaSource", "history": "prvDiaSources"}
_SHAPE = {"ztf": _ZTF, "lsst": _LSST}
_HISTORY_PREFIX = "prv_"


def object_partition(object_key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner gives a message keyed object_key.

    (consistent_random: CRC32 of the key modulo the number of partitions.)
    """
    return zlib.crc32(object_key) % partitions


class FinkClientCodec:
    """Encodes enriched records into fink-client's layout; built once per pipeline run."""

    def __init__(self, survey: str, columns: Mapping[str, str]) -> None:
        shape = _SHAPE[survey]
        survey_columns = columns_for(survey)
        self.survey = survey
        self.top = tuple(shape["top"])
        self.point_name, self.history_name = shape["point"], shape["history"]
        self.point = [c for c in survey_columns if not c.startswith(_HISTORY_PREFIX)]
        if survey == "ztf":
            self.point.remove(OBJECT_ID[survey])  # ZTF's candidate record has no objectId
        self.history = [c for c in survey_columns if c.startswith(_HISTORY_PREFIX)]
        self.added = [c for c in columns if c not in survey_columns]
        nested = {*self.top, self.point_name, self.history_name, "diaObject", FILTERS_FIELD}
        clash = sorted(nested & set(self.added))
        if clash:
            raise ValueError(f"module columns {clash} clash with fink-client's alert layout")
        self.schema = self._schema(survey, columns)
        self.parsed = fastavro.parse_schema(self.schema)
        self.key = json.dumps(self.schema, separators=(",", ":")).encode()

    def _schema(self, survey: str, columns: Mapping[str, str]) -> dict[str, Any]:
        def field(name: str, kind: str) -> dict[str, Any]:
            return {"name": name, "type": avro_type(kind), "default": None}

        def element(name: str) -> dict[str, Any]:  # prv_jd: array<double> -> jd: double
            return field(name.removeprefix(_HISTORY_PREFIX), columns[name][len("array<") : -1])

        fields = [field(name, columns[name]) for name in self.top]
        fields.append(
            {
                "name": self.point_name,
                "type": {
                    "type": "record",
                    "name": self.point_name,
                    "fields": [field(c, columns[c]) for c in self.point],
                },
            }
        )
        if survey == "lsst":
            fields.append(
                {
                    "name": "diaObject",
                    "type": [
                        "null",
                        {
                            "type": "record",
                            "name": "diaObject",
                            "fields": [{"name": OBJECT_ID[survey], "type": "long"}],
                        },
                    ],
                    "default": None,
                }
            )
        history_record = {
            "type": "record",
            "name": f"{self.history_name}_point",
            "fields": [element(c) for c in self.history],
        }
        fields.append(
            {
                "name": self.history_name,
                "type": ["null", {"type": "array", "items": history_record}],
                "default": None,
            }
        )
        fields.extend(field(c, columns[c]) for c in self.added)
        fields.append(
            {
                "name": FILTERS_FIELD,
                "type": {"type": "array", "items": "string"},
                "doc": "the science filters this alert passed",
                "default": [],
            }
        )
        return {
            "type": "record",
            "name": "alert",
            "namespace": f"fink.{survey}.fink_client",
            "doc": "An alert as Fink distributes it, with the pipeline's science columns",
            "fields": fields,
        }

    def record(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """The nested record of a flat enriched record (plain Python values)."""
        out: dict[str, Any] = {name: flat[name] for name in self.top}
        out[self.point_name] = {c: flat[c] for c in self.point}
        if self.survey == "lsst":
            object_id = flat[OBJECT_ID[self.survey]]
            out["diaObject"] = None if object_id is None else {OBJECT_ID[self.survey]: object_id}
        series = [flat[c] for c in self.history]
        if any(s is None for s in series):
            out[self.history_name] = None
        else:
            names = [c.removeprefix(_HISTORY_PREFIX) for c in self.history]
            out[self.history_name] = [
                dict(zip(names, point, strict=True)) for point in zip(*series, strict=True)
            ]
        for c in self.added:
            out[c] = flat[c]
        out[FILTERS_FIELD] = flat.get(FILTERS_FIELD, [])
        return out

    def encode(self, flat: Mapping[str, Any]) -> bytes:
        """The message value: the nested record, schemaless Avro (the key is `self.key`)."""
        out = io.BytesIO()
        fastavro.schemaless_writer(out, self.parsed, self.record(flat))
        return out.getvalue()

"""The rules of ScienceFilters, without servers: what is refused and why, what each pipeline runs.

The code checks and the dry run are injected here (the e2e tests run the real
ones in real processes), so each refusal's reason and message is checked on its
own; the control topic's records are checked as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from fakes import fake_context
from pipeline_documents import MODULES, minimal, with_filters

from fink_core.filter_control import (
    FILTER_PREFIX,
    FilterReport,
    LiveFilter,
    changes,
    control_topic,
    read_state,
)
from fink_core.science import shipped_catalogue
from fink_core.spec import parse_pipeline
from fink_operator.desired import desired_state, with_science_filters
from fink_operator.filter_passes import filter_pass
from fink_operator.science_filters import (
    FilterRefused,
    code_hash,
    default_entrypoint,
    for_pipeline,
    runnable,
    validate,
)

CODE = "import pandas as pd\n\ndef bright(magpsf, rb):\n    return (magpsf < 18) & (rb > 0.5)\n"
CATALOGUE = shipped_catalogue()


def document(name: str = "bright", pipelines: tuple[str, ...] = ("p1",), **spec: Any) -> dict:
    return {
        "kind": "ScienceFilter",
        "metadata": {"name": name, "namespace": "ns", "generation": 3},
        "spec": {
            "pipelines": list(pipelines),
            "survey": "ztf",
            "code": {"inline": CODE},
            **spec,
        },
    }


def checked(code: str, entrypoint: str, columns: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    assert {"magpsf", "rb", "roid"} <= set(columns)  # the alert's and the modules' columns
    return entrypoint, ("magpsf", "rb")


def dry(code: str, entrypoint: str, survey: str, columns: Mapping[str, str]) -> str:
    return "7 of 1000 passed, 2.0 µs per alert"


def refuse(*_: Any) -> Any:
    raise ValueError("line 4, column 12: no column magnitude; did you mean magpsf?")


PIPELINES = {"p1": with_filters("p1", 1)}


def test_a_valid_filter_says_what_it_reads_what_the_dry_run_found_and_its_topic() -> None:
    result = validate(document(), CODE, PIPELINES, CATALOGUE, checked, dry)
    assert result.condition.status is True
    assert result.entrypoint == "bright" and result.reads == ("magpsf", "rb")
    assert result.topic == "fink_bright_ztf"
    assert result.code_hash == code_hash(CODE)
    assert "7 of 1000 passed" in result.condition.message


@pytest.mark.parametrize(
    ("changed", "reason", "words"),
    [
        ({"pipelines": {}}, "PipelineNotFound", "BrokerPipeline ns/p1 does not exist"),
        ({"doc": document(survey="lsst")}, "SurveyMismatch", "reads ztf alerts"),
        ({"doc": document(name="early_sn_candidates")}, "NameTaken", "rename"),
        ({"doc": document(topic={"name": "alerts"})}, "TopicTaken", "set spec.topic.name"),
        ({"code": None}, "CodeNotFound", "spec.code.inline"),
        ({"check": refuse}, "CodeRefused", "line 4, column 12"),
        ({"dry": refuse}, "DryRunFailed", "sample ztf alerts failed"),
        ({"doc": {"kind": "ScienceFilter", "metadata": {"name": "x"}}}, "InvalidSpec", "spec"),
    ],
)
def test_each_refusal_has_its_reason_and_says_what_to_change(
    changed: dict[str, Any], reason: str, words: str
) -> None:
    result = validate(
        changed.get("doc", document()),
        changed.get("code", CODE),
        changed.get("pipelines", PIPELINES),
        CATALOGUE,
        changed.get("check", checked),
        changed.get("dry", dry),
    )
    assert (result.condition.status, result.condition.reason) == (False, reason)
    assert words in result.condition.message, result.condition.message


def test_the_entrypoint_defaults_to_the_only_public_function() -> None:
    assert default_entrypoint(CODE) == "bright"
    two = CODE + "\ndef other(x):\n    return x\n"
    with pytest.raises(FilterRefused, match=r"name the one to call in spec\.entrypoint"):
        default_entrypoint(two)
    assert default_entrypoint(CODE + "\ndef _helper(x):\n    return x\n") == "bright"


def validated(doc: dict, code: str = CODE, generation: int = 3) -> dict:
    return {
        **doc,
        "status": {
            "conditions": [
                {"type": "Validated", "status": "True", "observedGeneration": generation}
            ],
            "codeHash": code_hash(code),
            "entrypoint": "bright",
            "reads": ["magpsf", "rb"],
        },
    }


def test_a_pipeline_runs_only_what_was_validated_for_this_generation_and_code() -> None:
    pipeline = parse_pipeline(with_filters("p1", 1))
    documents = [
        validated(document("good")),
        validated(document("stale"), generation=2),  # changed since: not run unchecked
        validated(document("edited"), code="other code"),  # a ConfigMap changed under it
        validated(document("off", enabled=False)),
        validated(document("elsewhere", pipelines=("p2",))),
        document("unchecked"),
    ]
    found = for_pipeline(pipeline, documents, lambda spec: CODE)
    assert found.attached
    assert list(found.live) == ["good"]
    live = found.live["good"]
    assert (live.generation, live.entrypoint, live.reads, live.topic) == (
        3,
        "bright",
        ("magpsf", "rb"),
        "fink_good_ztf",
    )
    # unset topic settings inherit the pipeline's topic defaults
    assert found.topics["fink_good_ztf"] == pipeline.kafka_sink.topic_defaults
    assert not runnable(validated(document()), None)


def test_the_pipeline_wants_its_filters_topics_and_a_compacted_control_topic() -> None:
    desired = desired_state(with_filters("p1", 1))
    pipeline = parse_pipeline(with_filters("p1", 1))
    found = for_pipeline(pipeline, [validated(document())], lambda spec: CODE)
    wanted = with_science_filters(desired, found.topics, control_topic("p1"))
    topics = {t.name: t for t in wanted.resources.topics}
    assert set(topics) == set(desired.topic_names) | {"fink_bright_ztf", "p1-filters"}
    control = topics["p1-filters"]
    assert control.partitions == 1
    assert control.config["cleanup.policy"] == "compact"
    assert control.config["retention.ms"] == "-1"
    assert with_science_filters(desired, {}, None) is desired


def test_the_control_topic_holds_the_latest_record_per_key_and_tombstones_remove() -> None:
    one = LiveFilter("bright", 1, CODE, "bright", ("magpsf",), "t")
    two = LiveFilter("bright", 2, CODE + "\n", "bright", ("magpsf",), "t")
    report = FilterReport("bright", 2, "failed", 5, 1000, "FilterRaised", "line 3: boom")
    state = read_state(
        [(one.key(), one.value()), (two.key(), two.value()), (report.key(), report.value())]
    )
    assert state.filters == {"bright": two}
    assert state.reports == {"bright": report}
    # only what differs is written; a filter no longer wanted gets a tombstone
    assert changes({"bright": two}, {"bright": two}) == []
    assert changes({"bright": one}, {"bright": two}) == [(two.key(), two.value())]
    assert changes({"bright": two}, {}) == [(f"{FILTER_PREFIX}bright".encode(), None)]
    state.apply(f"{FILTER_PREFIX}bright".encode(), None)
    assert state.filters == {}


# --- a filter pass: validation only when what it depends on changed ------------------------


class CountingDryRun:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any) -> str:
        self.calls += 1
        return dry(*args)


def test_validation_runs_again_only_when_the_generation_code_or_columns_change() -> None:
    context = fake_context(configmaps={"codes": {"filter.py": CODE}})
    pipelines = {("ns", "p1"): with_filters("p1", 1)}
    counted = CountingDryRun()

    def again(body: dict) -> dict:
        result = filter_pass(
            context, body, lambda ns, name: pipelines.get((ns, name)), checked, counted
        )
        return {**body, "status": result.status}

    body = again(document(code={"configMapRef": {"name": "codes"}}))
    assert counted.calls == 1
    validated = next(c for c in body["status"]["conditions"] if c["type"] == "Validated")
    assert validated["status"] == "True"
    body = again(body)  # nothing changed: the status's key says so, no dry run
    assert counted.calls == 1
    context.readers = lambda namespace: ({"codes": {"filter.py": CODE + "\n"}}.get, {}.get)
    body = again(body)  # the ConfigMap's code changed under the same generation
    assert counted.calls == 2
    pipelines[("ns", "p1")] = with_filters("p1", 2)  # same columns: no new dry run
    body = again(body)
    assert counted.calls == 2
    pipelines[("ns", "p1")] = minimal("p1", modules=[*MODULES, {"name": "snia_score"}])
    body = again(body)  # the pipeline's columns changed: checked again
    assert counted.calls == 3
    body = again({**body, "metadata": {**body["metadata"], "generation": 4}})
    assert counted.calls == 4

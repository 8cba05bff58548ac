"""The ScienceFilter CustomResourceDefinition: the API server's view of `fink_core.science_filter`.

manifests/crds/sciencefilters.fink.broker.dev.yaml is generated from `crd()`
(`fink-operator crd`); tests fail when the YAML is stale. What the schema can
say (names, one code source, the layout) the API server refuses at `kubectl
apply`; what needs the code itself (it parses, its imports, the columns it
reads, a dry run) the operator checks and reports in the Validated condition.
"""

from __future__ import annotations

from typing import Any

import yaml

from fink_core import crd as base
from fink_core import science_filter as model

PLURAL = model.PLURAL
SINGULAR = "sciencefilter"
SHORT_NAMES = ("sf",)
CRD_NAME = f"{PLURAL}.{base.GROUP}"
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _code() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The filter's Python code: exactly one of inline or configMapRef.",
        "properties": {
            "inline": base._string(
                "The code itself: a module defining the function (see spec.entrypoint) whose "
                "parameters are named after the alert columns it reads and which returns one "
                "boolean per alert.",
                minLength=1,
                maxLength=model.MAX_CODE_BYTES,
            ),
            "configMapRef": {
                "type": "object",
                "description": "A ConfigMap in the filter's namespace holding the code.",
                "required": ["name"],
                "properties": {
                    "name": base._string("Name of the ConfigMap.", minLength=1, maxLength=253),
                    "key": base._string(
                        "Key holding the code.", default="filter.py", minLength=1, maxLength=253
                    ),
                },
            },
        },
        "x-kubernetes-validations": [
            {
                "rule": "has(self.inline) != has(self.configMapRef)",
                "message": "give the code either inline (spec.code.inline) or in a ConfigMap "
                "(spec.code.configMapRef), not both and not neither",
                "reason": "FieldValueInvalid",
            }
        ],
    }


def _topic() -> dict[str, Any]:
    settings = base._topic_settings(
        "Where the alerts the filter selects are published. Settings left unset inherit "
        "the pipeline's spec.sinks.kafka.topicDefaults.",
        with_defaults=False,
    )
    settings["properties"] = {
        "name": base._topic_name("Topic name; defaults to fink_<filter name>_<survey>."),
        "layout": base._string(
            "How messages are laid out: fink (Avro single-object encoding, the schema from "
            "`fink-pipeline schema`) or fink-client (what Fink's own client reads unchanged).",
            enum=list(model.LAYOUTS),
            default="fink",
        ),
        **settings["properties"],
    }
    return settings


def _spec() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A science filter: code, the pipeline(s) it runs in, and its topic.",
        "required": ["pipelines", "survey", "code"],
        "properties": {
            "pipelines": {
                "type": "array",
                "description": "BrokerPipelines in this namespace that run the filter.",
                "minItems": 1,
                "maxItems": 16,
                "x-kubernetes-list-type": "set",
                "items": base._string("A BrokerPipeline's name.", minLength=1, maxLength=253),
            },
            "survey": base._string(
                "The survey whose alerts the filter reads; must be the pipelines' survey.",
                enum=list(base.model.SURVEYS),
            ),
            "code": _code(),
            "entrypoint": base._string(
                "The function to call; defaults to the code's only public function.",
                maxLength=100,
                pattern=ENTRYPOINT_PATTERN,
            ),
            "enabled": {
                "type": "boolean",
                "description": "false stops publishing (the topic and its alerts stay).",
                "default": True,
            },
            "description": base._string(
                "What the filter selects, for its readers.", maxLength=2048
            ),
            "contact": base._string("Who to ask about it (name, e-mail).", maxLength=256),
            "topic": _topic(),
        },
    }


def _status() -> dict[str, Any]:
    pipeline_status = base._status()
    condition = pipeline_status["properties"]["conditions"]["items"]
    return {
        "type": "object",
        "description": "What the operator checked and what the pipelines report.",
        "properties": {
            "observedGeneration": base._integer("Last generation checked.", format="int64"),
            "conditions": {
                "type": "array",
                "description": "Validated (the code passed every check) and Live (the "
                "pipelines run this generation).",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": condition,
            },
            "topic": base._string("The topic the filter publishes to."),
            "entrypoint": base._string("The function the pipelines call."),
            "reads": {
                "type": "array",
                "description": "The alert columns the filter reads (its parameters).",
                "items": base._string("A column."),
            },
            "alertsPassed": base._integer(
                "Alerts the filter selected and published, all pipelines together.",
                format="int64",
            ),
            "lastPassedTime": base._string("When an alert last passed.", format="date-time"),
            "dryRun": base._string("What the dry run on sample alerts found."),
            "codeHash": base._string("Hash of the code that was validated."),
            "validationKey": base._string(
                "What the validation depended on (generation, code, the pipelines' columns); "
                "validation runs again when it changes."
            ),
            "enabled": {"type": "boolean", "description": "spec.enabled, as last seen."},
        },
    }


def schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A scientist's filter, run by broker pipelines without a release.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "fink.broker.dev/v1alpha1."},
            "kind": {"type": "string", "description": "ScienceFilter."},
            "metadata": {"type": "object"},
            "spec": _spec(),
            "status": _status(),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.matches('{model.NAME_PATTERN}') && "
                f"size(self.metadata.name) <= {model.MAX_NAME}",
                "message": "a filter's name becomes a column and a topic name: lower-case "
                f"letters, digits, '-' and '_' only (no dots), at most {model.MAX_NAME} "
                "characters",
                "reason": "FieldValueInvalid",
            },
        ],
    }


def _printer_columns() -> list[dict[str, Any]]:
    def condition(kind: str, field: str) -> str:
        return f'.status.conditions[?(@.type=="{kind}")].{field}'

    return [
        {"name": "Survey", "type": "string", "jsonPath": ".spec.survey"},
        {"name": "Validated", "type": "string", "jsonPath": condition("Validated", "status")},
        {"name": "Live", "type": "string", "jsonPath": condition("Live", "status")},
        {"name": "Reason", "type": "string", "jsonPath": condition("Live", "reason")},
        {"name": "Topic", "type": "string", "jsonPath": ".status.topic"},
        {"name": "Passed", "type": "integer", "jsonPath": ".status.alertsPassed"},
        {"name": "Enabled", "type": "boolean", "jsonPath": ".spec.enabled", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def crd() -> dict[str, Any]:
    """The ScienceFilter CustomResourceDefinition document, ready to apply."""
    return base.definition(
        kind=model.KIND,
        plural=PLURAL,
        singular=SINGULAR,
        short_names=list(SHORT_NAMES),
        scope="Namespaced",
        schema=schema(),
        columns=_printer_columns(),
        status=True,
    )


def render_yaml() -> str:
    return base.header("core/fink_core/filter_crd.py") + yaml.safe_dump(
        crd(), sort_keys=False, width=100
    )

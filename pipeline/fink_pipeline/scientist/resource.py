"""`fink-filter apply`: the ScienceFilter resource, sent to the Kubernetes API, then watched.

The resource is built from FILE.py (inline, the current text) and NAME.yaml
(everything else), options winning. It is created, or its whole spec replaced
(a JSON patch of /spec), so that what the cluster holds is exactly what was
applied: a field removed from NAME.yaml is removed there too. Then the
command reads the status until the operator has judged *this* generation
(conditions carry observedGeneration): Validated, then Live once every
pipeline runs it. The operator does the checking; this only reports it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fink_core import crd
from fink_core.errors import SpecError
from fink_core.science_filter import PLURAL, parse_science_filter
from fink_pipeline.scientist.filter_file import FilterFile
from fink_pipeline.scientist.problems import BadInput, FilterFailed, TimedOut, Unreachable, pointed
from fink_pipeline.scientist.template import check_name

GROUP, VERSION = crd.GROUP, crd.VERSION
VALIDATED, LIVE = "Validated", "Live"
# Live=False reasons that mean "not yet", not "failed"
# Live's reasons while things go as they should: the operator hands the filter over
# (Publishing), then the pipelines load it at their next micro-batch (Loading)
WAITING_REASONS = ("Publishing", "Loading", "NotValidated")
POLL_SECONDS = 0.5


def build(
    source: FilterFile,
    *,
    name: str | None,
    namespace: str,
    pipelines: list[str],
    survey: str | None,
    entrypoint: str | None,
    topic: str | None,
    layout: str | None,
) -> dict[str, Any]:
    """The complete ScienceFilter document; BadInput when it would not parse."""
    document = copy.deepcopy(source.resource) if source.resource else {}
    document.update(apiVersion=f"{GROUP}/{VERSION}", kind="ScienceFilter")
    metadata = {
        k: v
        for k, v in (document.get("metadata") or {}).items()
        if k in ("name", "labels", "annotations")
    }
    metadata["name"] = name or source.name
    metadata["namespace"] = namespace
    check_name(metadata["name"])
    spec = dict(document.get("spec") or {})
    if pipelines:
        spec["pipelines"] = pipelines
    if not spec.get("pipelines"):
        raise BadInput(
            "which pipeline runs this filter? give --pipeline P (or spec.pipelines in "
            f"{source.path.with_suffix('.yaml')})"
        )
    spec["survey"] = survey or spec.get("survey") or "ztf"
    if entrypoint:
        spec["entrypoint"] = entrypoint
    if topic or layout:
        spec["topic"] = {
            **(spec.get("topic") or {}),
            **({"name": topic} if topic else {}),
            **({"layout": layout} if layout else {}),
        }
    for empty in ("description", "contact"):
        if spec.get(empty) == "":
            del spec[empty]
    spec["code"] = {"inline": source.code}
    document["metadata"], document["spec"] = metadata, spec
    try:
        parse_science_filter(document)
    except SpecError as error:
        raise BadInput(f"the ScienceFilter would be invalid: {error}") from None
    return document


def as_yaml(document: Mapping[str, Any]) -> str:
    """The resource as YAML, its code as a literal block: readable, and diffable in git."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(dict(document), Dumper=Dumper, sort_keys=False)


def api_client(kubeconfig: str | None) -> Any:
    """A client from KUBECONFIG (or --kubeconfig, or ~/.kube/config), else the in-cluster account."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        return config.new_client_from_config(config_file=kubeconfig)
    except (ConfigException, OSError) as error:
        if kubeconfig:
            raise BadInput(f"cannot use kubeconfig {kubeconfig}: {error}") from None
        try:
            config.load_incluster_config()
        except ConfigException:
            raise Unreachable(
                'no Kubernetes configuration: set KUBECONFIG (e.g. eval "$(fink-stack env)"), '
                "or give --kubeconfig"
            ) from None
        return client.ApiClient()


def default_namespace(kubeconfig: str | None) -> str:
    """The current context's namespace, as kubectl would use it; else "default"."""
    from kubernetes import config

    try:
        _, active = config.list_kube_config_contexts(config_file=kubeconfig)
        return str((active or {}).get("context", {}).get("namespace") or "default")
    except Exception:  # in a pod, or no kubeconfig: kubectl's default too
        return "default"


class Cluster:
    """The few calls `apply` and `tail` make, with the API's errors turned into exit codes."""

    def __init__(self, api: Any) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api)
        self.server = str(api.configuration.host)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        from kubernetes.client.rest import ApiException

        try:
            return call()
        except ApiException as error:
            if error.status == 404:
                return None
            if error.status in (401, 403):
                raise BadInput(
                    f"the Kubernetes API at {self.server} refused to {what}: {error.status} "
                    f"{error.reason} (ask for a Role allowing it in this namespace)"
                ) from None
            if error.status in (400, 422):
                raise BadInput(
                    f"the Kubernetes API refused to {what}: {_api_message(error)}"
                ) from None
            raise Unreachable(
                f"the Kubernetes API at {self.server} failed to {what}: {error.status} {error.reason}"
            ) from None
        except Exception as error:  # urllib3's connection errors and the like
            detail = str(getattr(error, "reason", None) or error).splitlines()[0]
            raise Unreachable(
                f"the Kubernetes API at {self.server} does not answer: {detail}"
            ) from None

    def get_filter(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(
            f"read ScienceFilter {namespace}/{name}",
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            ),
        )

    def get_pipeline(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._call(
            f"read BrokerPipeline {namespace}/{name}",
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, crd.PLURAL, name
            ),
        )

    def apply(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Create the filter, or replace its spec; the resource as the API server now holds it."""
        metadata = document["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        what = f"apply ScienceFilter {namespace}/{name}"
        if self.get_filter(namespace, name) is None:
            created = self._call(
                what,
                lambda: self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, dict(document)
                ),
            )
            if created is None:
                raise Unreachable(
                    f"the Kubernetes API at {self.server} has no ScienceFilter kind in namespace "
                    f"{namespace} (is the CRD installed? does the namespace exist?)"
                )
            return created
        patch = [{"op": "replace", "path": "/spec", "value": document["spec"]}]
        for key in ("labels", "annotations"):
            if key in metadata:
                patch.append({"op": "add", "path": f"/metadata/{key}", "value": metadata[key]})
        return self._call(
            what,
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                patch,
                _content_type="application/json-patch+json",  # else a merge patch
            ),
        )


def _api_message(error: Any) -> str:
    import json

    try:
        return str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError):
        return str(error.reason)


@dataclass(frozen=True)
class Outcome:
    validated: dict[str, Any]
    live: dict[str, Any] | None
    status: dict[str, Any]


def conditions_of(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The conditions the operator set for the resource's current generation."""
    generation = (body.get("metadata") or {}).get("generation")
    status = body.get("status") or {}
    return {
        c["type"]: c
        for c in status.get("conditions") or ()
        if c.get("observedGeneration") == generation
    }


def wait(
    cluster: Cluster,
    namespace: str,
    name: str,
    generation: int,
    code: str,
    path: str,
    timeout: float,
    validated_only: bool,
    say: Callable[[str], None],
) -> Outcome:
    """Follow the status until judged: FilterFailed when refused or failed, TimedOut when too slow."""
    deadline = time.monotonic() + timeout
    said: set[str] = set()
    last: dict[str, dict[str, Any]] = {}

    def once(line: str) -> None:
        if line not in said:
            said.add(line)
            say(line)

    while True:
        body = cluster.get_filter(namespace, name)
        if body is None:
            raise FilterFailed(f"ScienceFilter {namespace}/{name} was deleted while waiting")
        current = (body.get("metadata") or {}).get("generation")
        if current != generation:
            raise FilterFailed(
                f"ScienceFilter {namespace}/{name} changed while waiting (generation {current}, "
                f"this apply made {generation}): someone else applied it"
            )
        status = body.get("status") or {}
        last = conditions_of(body)
        validated, live = last.get(VALIDATED), last.get(LIVE)
        if validated is not None:
            if validated["status"] != "True":
                raise FilterFailed(
                    f"refused ({validated['reason']}): " + pointed(path, code, validated["message"])
                )
            once(
                f"validated: reads {', '.join(status.get('reads') or [])}; dry run "
                f"{status.get('dryRun', '')}; publishes to {status.get('topic', '?')}"
            )
            # validated, and handed to its pipelines: what a running job loads next batch
            handed = live is not None and live["reason"] not in ("Publishing", "NotValidated")
            if validated_only and handed:
                return Outcome(validated, live, status)
        if live is not None and validated is not None:
            if live["status"] == "True":
                return Outcome(validated, live, status)
            if live["reason"] not in WAITING_REASONS:
                raise FilterFailed(
                    f"not live ({live['reason']}): " + pointed(path, code, live["message"])
                )
            once(f"waiting: {live['message']}")
        if time.monotonic() >= deadline:
            state = "; ".join(
                f"{t}={c['status']} ({c['reason']}): {c['message']}" for t, c in last.items()
            )
            raise TimedOut(
                f"ScienceFilter {namespace}/{name} not {'validated' if validated is None else 'live'} "
                f"after {timeout:g} s ({state or 'the operator has not judged it yet: is it running?'})"
            )
        time.sleep(POLL_SECONDS)

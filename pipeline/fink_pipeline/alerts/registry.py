"""A client of a schema registry speaking the Confluent Schema Registry API.

Rubin writes each alert with the id its registry gave the writer schema; the
decoder asks the registry once per id (GET /schemas/ids/{id}) and keeps the
answer for the life of the process: a registered schema never changes. The
generator registers the schemas it writes with (POST
/subjects/{subject}/versions), so a test stream is read exactly as Rubin's is.

A registry that does not answer is not the alert's fault: `RegistryUnavailable`
is raised (the micro-batch fails and is retried) rather than sending a whole
live stream to the dead letters; an id the registry does not know is the
alert's fault (`UnknownSchemaId`).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

# The subject Rubin registers its alert schema under.
RUBIN_SUBJECT = "alert-packet"
TIMEOUT_S = 10.0
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryUnavailable(Exception):
    """The registry did not answer or answered with a server error: retry later."""


class UnknownSchemaId(Exception):
    """The registry answered that it has no schema with this id."""


class SchemaRegistry:
    """One registry at `url` (its Confluent-compatible base URL), with a cache per id."""

    def __init__(self, url: str, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._by_id: dict[int, str] = {}
        self._lock = threading.Lock()

    def schema_text(self, schema_id: int) -> str:
        """The writer schema registered under `schema_id`, as JSON text."""
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        answer = self._call("GET", f"/schemas/ids/{schema_id}", missing=UnknownSchemaId)
        text = str(answer["schema"])
        with self._lock:
            self._by_id[schema_id] = text
        return text

    def register(self, schema: dict[str, Any] | str, subject: str = RUBIN_SUBJECT) -> int:
        """Register an Avro schema under `subject` (idempotent) and return its id."""
        text = schema if isinstance(schema, str) else json.dumps(schema)
        answer = self._call(
            "POST", f"/subjects/{subject}/versions", {"schemaType": "AVRO", "schema": text}
        )
        schema_id = int(answer["id"])
        with self._lock:
            self._by_id[schema_id] = text
        return schema_id

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        missing: type[Exception] | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as error:
            detail = _error_message(error)
            if error.code == 404 and missing is not None:
                raise missing(detail) from None
            if error.code >= 500:
                raise RegistryUnavailable(
                    f"schema registry {self.url} answered {error.code}: {detail}"
                ) from None
            raise ValueError(
                f"schema registry {self.url} refused {method} {path}: {error.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise RegistryUnavailable(f"schema registry {self.url} unreachable: {reason}") from None


def _error_message(error: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(error.read() or b"{}")
    except ValueError:
        return error.reason or ""
    return str(payload.get("message") or error.reason or "")


_REGISTRIES: dict[str, SchemaRegistry] = {}
_REGISTRIES_LOCK = threading.Lock()


def registry_at(url: str) -> SchemaRegistry:
    """The process-wide client of the registry at `url`, so its cache outlives a batch."""
    with _REGISTRIES_LOCK:
        if url not in _REGISTRIES:
            _REGISTRIES[url] = SchemaRegistry(url)
        return _REGISTRIES[url]

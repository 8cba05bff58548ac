"""Thin adapter over confluent-kafka's AdminClient: observe, create, grow, configure, delete.

Every call has a short timeout and turns "no broker answered" into
ServerUnreachable, so a Kafka outage becomes a retried condition rather than a
hung handler; a broker that refused the credentials (SASL) or whose TLS
handshake failed, into AuthenticationFailed; a refusal becomes ServerRejected. Calls are batched: one request
covers all the topics asked for, whether of one pipeline or of hundreds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from fink_core.calls import count
from fink_core.connections import KafkaConnection
from fink_core.errors import AuthenticationFailed, ServerRejected, ServerUnreachable
from fink_core.resources import TopicState

log = logging.getLogger(__name__)

# librdkafka reports a refused sign-in or TLS handshake only to the error callback;
# the call itself then fails as "transport failure" or "timed out"
_REFUSALS = (KafkaError._AUTHENTICATION, KafkaError._SSL)
# errors that follow a refusal without saying more about it
_CONSEQUENCES = (KafkaError._ALL_BROKERS_DOWN,)
# librdkafka's own log repeats a connection failure at every reconnect (hundreds of
# lines while a broker is down); the failure reaches the user once, as the call's
# error (ServerUnreachable, AuthenticationFailed) in a condition or a CLI message
_LIBRDKAFKA_LOG = logging.getLogger("fink_core.librdkafka")
_LIBRDKAFKA_LOG.setLevel(logging.CRITICAL)


class _Client:
    """An AdminClient and the last connection error librdkafka reported for it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.last_error: KafkaError | None = None
        self.admin = AdminClient({**config, "error_cb": self._record})

    def _record(self, error: KafkaError) -> None:
        if error.code() not in _CONSEQUENCES:
            self.last_error = error

    def refusal(self) -> KafkaError | None:
        """The refusal behind a failed call, if the latest connection error was one."""
        self.admin.poll(0)  # serves the error callback
        error = self.last_error
        return error if error is not None and error.code() in _REFUSALS else None


_clients: dict[tuple[str, tuple[tuple[str, str], ...]], _Client] = {}
_clients_lock = threading.Lock()


def _client(bootstrap: str, settings: Mapping[str, str]) -> _Client:
    """One AdminClient per cluster and credentials, shared by all pipelines (thread-safe)."""
    key = (bootstrap, tuple(sorted(settings.items())))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _Client(
                {
                    "bootstrap.servers": bootstrap,
                    "socket.connection.setup.timeout.ms": 3000,
                    "reconnect.backoff.max.ms": 2000,
                    "logger": _LIBRDKAFKA_LOG,
                    **settings,
                }
            )
        return _clients[key]


class KafkaAdmin:
    """The topics of one Kafka cluster, as the reconciler sees them."""

    def __init__(
        self,
        connection: KafkaConnection,
        *,
        timeout: float = 5.0,
        step_delay: float = 0.0,
    ) -> None:
        self.bootstrap = connection.bootstrap
        self.timeout = timeout
        # test hook: pause between topic creations so a test can kill the operator mid-pass
        self.step_delay = step_delay
        self._client = _client(connection.bootstrap, connection.settings)
        self._admin = self._client.admin
        self._cluster_id: str | None = None

    def _unreachable(self, error: object) -> ServerUnreachable:
        """No answer: AuthenticationFailed if the broker refused the credentials or TLS."""
        refusal = self._client.refusal()
        if refusal is not None:
            return AuthenticationFailed("Kafka", self.bootstrap, refusal.str())
        return ServerUnreachable("Kafka", self.bootstrap, str(error))

    def observe(self, names: Iterable[str], config_keys: Iterable[str]) -> dict[str, TopicState]:
        """The named topics that exist, with partitions, replicas and the given configs."""
        wanted = list(names)
        try:
            count("kafka", "metadata")
            metadata = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as error:
            raise self._unreachable(error.args[0]) from error
        self._cluster_id = metadata.cluster_id or self._cluster_id
        present = {n: metadata.topics[n] for n in wanted if n in metadata.topics}
        configs = self._configs(list(present), set(config_keys))
        observed = {}
        for name, topic in present.items():
            partitions = topic.partitions
            replicas = len(next(iter(partitions.values())).replicas) if partitions else 0
            observed[name] = TopicState(name, len(partitions), replicas, configs.get(name, {}))
        return observed

    def _configs(self, names: list[str], keys: set[str]) -> dict[str, dict[str, str]]:
        if not names:
            return {}
        resources = [ConfigResource(ResourceType.TOPIC, n) for n in names]
        count("kafka", "describe_configs")
        futures = self._admin.describe_configs(resources, request_timeout=self.timeout)
        result = {}
        for resource, future in futures.items():
            entries = self._wait(future, resource.name)
            result[resource.name] = {
                k: e.value for k, e in entries.items() if k in keys and e.value is not None
            }
        return result

    def list_names(self) -> set[str]:
        try:
            count("kafka", "metadata")
            return set(self._admin.list_topics(timeout=self.timeout).topics)
        except KafkaException as error:
            raise self._unreachable(error.args[0]) from error

    def cluster_id(self) -> str:
        """Kafka's own id of the cluster: two addresses of one cluster give the same id."""
        if self._cluster_id:
            return self._cluster_id
        try:
            metadata = self._admin.list_topics(timeout=self.timeout)
        except KafkaException as error:
            raise self._unreachable(error.args[0]) from error
        if not metadata.cluster_id:
            raise self._unreachable("the broker reported no cluster id")
        self._cluster_id = str(metadata.cluster_id)
        return self._cluster_id

    def create(self, topics: Iterable[TopicState]) -> list[str]:
        """Create topics; one that already exists counts as created (another pass won)."""
        new = [
            NewTopic(t.name, t.partitions, t.replication_factor, config=dict(t.config))
            for t in topics
        ]
        created = []
        batches = [[n] for n in new] if self.step_delay else [new]
        for batch in batches:
            if not batch:
                continue
            count("kafka", "create_topics")
            futures = self._admin.create_topics(
                batch, operation_timeout=self.timeout, request_timeout=self.timeout
            )
            for name, future in futures.items():
                if self._wait(future, name, tolerate=KafkaError.TOPIC_ALREADY_EXISTS):
                    created.append(name)
            if self.step_delay:
                time.sleep(self.step_delay)
        self._await_visible([t.topic for t in new])
        return created

    def _await_visible(self, names: list[str]) -> None:
        """Wait until created topics show in the broker's metadata, so Ready means usable.

        The controller acknowledges a creation once committed; a broker that has just
        restarted may still answer metadata requests without it for a moment, and a
        client reading the topic list then would not find what status calls Ready.
        """
        deadline = time.monotonic() + self.timeout
        missing = set(names)
        while missing:
            missing -= self.list_names()
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if missing:
            raise self._unreachable(
                f"created topics not yet visible in metadata: {', '.join(sorted(missing))}"
            )

    def grow(self, changes: Iterable[tuple[str, int, int]]) -> None:
        requests = [NewPartitions(name, wanted) for name, _, wanted in changes]
        if not requests:
            return
        count("kafka", "create_partitions")
        futures = self._admin.create_partitions(
            requests, operation_timeout=self.timeout, request_timeout=self.timeout
        )
        for name, future in futures.items():
            # already at that count: a previous pass did it before the operator stopped
            self._wait(future, name, tolerate=KafkaError.INVALID_PARTITIONS)

    def reconfigure(self, changes: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in sorted(configs.items())
                ],
            )
            for name, configs in changes
        ]
        if not resources:
            return
        count("kafka", "alter_configs")
        futures = self._admin.incremental_alter_configs(resources, request_timeout=self.timeout)
        for resource, future in futures.items():
            self._wait(future, resource.name)

    def delete(self, names: Iterable[str]) -> list[str]:
        """Delete topics; one already gone counts as deleted."""
        wanted = list(names)
        if not wanted:
            return []
        count("kafka", "delete_topics")
        futures = self._admin.delete_topics(
            wanted, operation_timeout=self.timeout, request_timeout=self.timeout
        )
        for name, future in futures.items():
            self._wait(future, name, tolerate=KafkaError.UNKNOWN_TOPIC_OR_PART)
        return wanted

    def _wait(self, future: Any, subject: str, tolerate: int | None = None) -> Any:
        """Result of an admin future; True/None for tolerated errors, typed errors otherwise."""
        try:
            return future.result(timeout=self.timeout * 2) or True
        except KafkaException as exception:
            error: KafkaError = exception.args[0]
            if tolerate is not None and error.code() == tolerate:
                return None
            if error.code() in (
                KafkaError._TRANSPORT,
                KafkaError._TIMED_OUT,
                KafkaError._ALL_BROKERS_DOWN,
                KafkaError.REQUEST_TIMED_OUT,
                KafkaError.NOT_CONTROLLER,
            ):
                raise self._unreachable(error.str()) from exception
            raise ServerRejected("Kafka", subject, error.str()) from exception
        except TimeoutError as exception:
            raise self._unreachable("no answer in time") from exception

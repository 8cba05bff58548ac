"""Leader election with a coordination.k8s.io Lease: of several replicas, one reconciles.

Two replicas (or an old and a new pod during a rolling upgrade) must never both
act: each would create topics, drivers and events. A replica becomes active
only once it holds the Lease; it renews it every few seconds, and if it cannot
renew before the lease would expire it stops at once (the process exits and
Kubernetes restarts it, to wait for the lease again). A replica that stops
normally gives the lease up, so its successor takes over without waiting.

Taking the lease over is a compare-and-swap on its resourceVersion, so two
waiting replicas cannot both win.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderLease:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration: float = 15.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration = duration
        self.clock = clock
        self._stop = threading.Event()

    def _lease(self) -> Any | None:
        try:
            return self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _body(self, version: str | None, transitions: int) -> client.V1Lease:
        now = self.clock()
        return client.V1Lease(
            metadata=client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, resource_version=version
            ),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=int(self.duration),
                acquire_time=now,
                renew_time=now,
                lease_transitions=transitions,
            ),
        )

    def try_acquire(self) -> bool:
        """Take the lease if it is free, expired or ours; False while another holds it."""
        lease = self._lease()
        if lease is None:
            try:
                self.coordination.create_namespaced_lease(self.namespace, self._body(None, 0))
            except ApiException as error:
                if error.status == 409:
                    return False
                raise
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or self.clock() > renewed + timedelta(
            seconds=spec.lease_duration_seconds or 0
        )
        if holder and holder != self.identity and not expired:
            return False
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1)
        try:
            self.coordination.replace_namespaced_lease(
                self.name, self.namespace, self._body(lease.metadata.resource_version, transitions)
            )
        except ApiException as error:
            if error.status == 409:  # someone else moved first
                return False
            raise
        return True

    def acquire(self, on_wait: Callable[[str], None] = lambda _: None) -> None:
        """Block until this replica holds the lease (or stop() is called)."""
        while not self._stop.is_set():
            if self.try_acquire():
                log.info(
                    "leader election: %s holds lease %s/%s",
                    self.identity,
                    self.namespace,
                    self.name,
                )
                return
            holder = getattr((self._lease() or client.V1Lease()).spec, "holder_identity", None)
            on_wait(holder or "?")
            self._stop.wait(self.duration / 3)

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in the background; call on_lost once renewing fails for a lease duration."""

        def renew() -> None:
            last_success = time.monotonic()
            while not self._stop.wait(self.duration / 3):
                try:
                    if self.try_acquire():
                        last_success = time.monotonic()
                        continue
                    log.error("leader election: another replica took lease %s", self.name)
                except Exception as error:  # API unreachable: keep trying until it expires
                    log.warning("leader election: could not renew the lease: %s", error)
                if time.monotonic() - last_success >= self.duration:
                    on_lost()
                    return

        thread = threading.Thread(target=renew, name="leader-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the lease up (a successor need not wait for it to expire)."""
        self._stop.set()
        try:
            lease = self._lease()
            if lease is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            self.coordination.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            log.warning("leader election: could not release the lease: %s", error)

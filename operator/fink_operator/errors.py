"""Errors the reconciler tells apart: a server it cannot reach is worth retrying."""

from __future__ import annotations


class ServerUnreachable(Exception):
    """Kafka or HBase did not answer; retry later with backoff, and say which server."""

    def __init__(self, server: str, address: str, detail: str) -> None:
        self.server = server  # "Kafka" or "HBase"
        self.address = address
        self.detail = detail
        super().__init__(f"{server} at {address} could not be reached: {detail}")

    @property
    def reason(self) -> str:
        return f"{self.server}Unreachable"


class ServerRejected(Exception):
    """The server answered but refused an operation (e.g. more replicas than brokers)."""

    def __init__(self, server: str, subject: str, detail: str) -> None:
        self.server = server
        self.subject = subject
        self.detail = detail
        super().__init__(f"{server} refused the change to {subject}: {detail}")

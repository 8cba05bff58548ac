"""Errors that say what to do next, not where they came from.

Two families: `Retryable` (nothing for the user to change: a server is down, a
Secret is not there yet; try again later) and `NeedsUser` (the user must change
the spec or the cluster: a rejected change, an invalid spec, a refused
setting). Every error carries a CamelCase `reason`, which the operator uses as
its condition reason and the command lines print.
"""

from __future__ import annotations


class FinkError(Exception):
    """Base of the errors the broker reports to its users."""

    reason = "Error"


class Retryable(FinkError):
    """Worth retrying with backoff: the situation may heal by itself."""


class NeedsUser(FinkError):
    """Will not heal by retrying: the message says what the user must change."""


class ServerUnreachable(Retryable):
    """Kafka or HBase did not answer; say which server, at which address."""

    def __init__(self, server: str, address: str, detail: str) -> None:
        self.server = server  # "Kafka" or "HBase"
        self.address = address
        self.detail = detail
        super().__init__(f"{server} at {address} could not be reached: {detail}")

    @property
    def reason(self) -> str:  # type: ignore[override]
        return f"{self.server}Unreachable"


class AuthenticationFailed(ServerUnreachable):
    """The server answered but refused the client: wrong credentials, or a TLS handshake failed.

    Retried like an unreachable server, because a corrected Secret (or a user made
    on the server) is only noticed by trying again; its reason and message say
    what to change.
    """

    def __init__(self, server: str, address: str, detail: str) -> None:
        super().__init__(server, address, detail)
        self.args = (
            f"{server} at {address} refused the connection's credentials: {detail}; check "
            "the credentials Secret (security.protocol, sasl.mechanism, sasl.username, "
            "sasl.password, ssl.ca.pem) against the server's users and certificate",
        )

    @property
    def reason(self) -> str:  # type: ignore[override]
        return f"{self.server}AuthenticationFailed"


class MissingReference(Retryable):
    """A ConfigMap or Secret the resource names does not exist (yet): create it."""

    reason = "ReferenceNotFound"

    def __init__(self, kind: str, name: str, namespace: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.namespace = namespace
        where = f" in namespace {namespace}" if namespace else ""
        super().__init__(
            f"{kind} {name!r}{where} not found: create it, or remove the reference from the spec"
        )


class ReferenceForbidden(NeedsUser):
    """The operator may not read a ConfigMap or Secret the resource names (RBAC)."""

    reason = "ReferenceForbidden"

    def __init__(self, kind: str, name: str, namespace: str | None = None) -> None:
        self.kind = kind
        self.name = name
        self.namespace = namespace
        where = f" in namespace {namespace}" if namespace else ""
        super().__init__(
            f"the operator may not read {kind} {name!r}{where} (forbidden by RBAC): grant its "
            "service account get on it, or refer to one it may read"
        )


class ServerRejected(NeedsUser):
    """The server answered but refused an operation (e.g. more replicas than brokers)."""

    def __init__(self, server: str, subject: str, detail: str) -> None:
        self.server = server
        self.subject = subject
        self.detail = detail
        super().__init__(f"{server} refused the change to {subject}: {detail}")

    @property
    def reason(self) -> str:  # type: ignore[override]
        return f"{self.server}Rejected"


class SpecError(NeedsUser, ValueError):
    """A pipeline document that cannot be run; the message names the field and the fix."""

    reason = "InvalidSpec"


class CredentialsRefused(NeedsUser):
    """A credentials Secret holds a setting tenants may not set (e.g. a file path)."""

    reason = "InvalidCredentials"

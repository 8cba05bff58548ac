"""Who owns which topic and table, and what a pipeline may do with each. Pure: no I/O.

Many teams share one Kubernetes cluster, one Kafka and one HBase: the operator
must never be the tool by which one team damages another's data. So every
topic and table a pipeline writes is *claimed* (a SinkClaim object, see
claims.py) before the operator touches it, and:

- the first claimant owns it; a later one gets a `Conflict` naming the owner and
  touches nothing;
- something that existed before any claim is never taken over implicitly: the
  pipeline must list it in `spec.adopt` (`AdoptionRequired` otherwise);
- a claim whose owner is gone (deleted while the operator was down) is stale
  and may be taken over, under the same rules;
- deleting, retuning and releasing act only on what this pipeline claimed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import Enum

from fink_operator.desired import PipelineRef

TOPIC = "KafkaTopic"
TABLE = "HBaseTable"
LABELS = {TOPIC: "topic", TABLE: "table"}
ADOPT_FIELDS = {TOPIC: "spec.adopt.topics", TABLE: "spec.adopt.tables"}


@dataclass(frozen=True)
class Claim:
    """One topic or table of one cluster, and the pipeline that owns it."""

    kind: str  # TOPIC or TABLE
    cluster: str  # Kafka's or HBase's own cluster id: two addresses of a cluster agree
    name: str
    owner: PipelineRef
    adopted: bool = False  # it existed before the claim and was adopted explicitly
    version: str | None = None  # the store's version, for compare-and-swap updates

    @property
    def object_name(self) -> str:
        return claim_object_name(self.kind, self.cluster, self.name)


def claim_object_name(kind: str, cluster: str, name: str) -> str:
    """A valid, stable Kubernetes name for a claim: readable prefix plus a hash of all three."""
    digest = hashlib.sha256(f"{kind}\0{cluster}\0{name}".encode()).hexdigest()[:16]
    readable = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40].strip("-") or "x"
    return f"{LABELS[kind]}.{readable}.{digest}"


class Action(Enum):
    MANAGE = "manage"  # ours already
    CLAIM = "claim"  # nobody's and absent: claim, then create
    ADOPT = "adopt"  # nobody's but present, and the spec adopts it (or we made it before)
    TAKE_OVER = "take-over"  # a stale claim (its owner is gone): replace it, then as above
    CONFLICT = "conflict"  # another live pipeline owns it
    ADOPTION_REQUIRED = "adoption-required"  # present, nobody's, and not listed in spec.adopt


REFUSALS = {Action.CONFLICT: "Conflict", Action.ADOPTION_REQUIRED: "AdoptionRequired"}


@dataclass(frozen=True)
class Verdict:
    kind: str
    name: str
    action: Action
    message: str = ""
    stale: Claim | None = None  # the claim to replace (TAKE_OVER)
    adopted: bool = False  # what the new claim records

    @property
    def refused(self) -> bool:
        return self.action in REFUSALS

    @property
    def reason(self) -> str:
        return REFUSALS.get(self.action, "")


def decide(
    kind: str,
    name: str,
    *,
    exists: bool,
    claim: Claim | None,
    me: PipelineRef,
    adopt_listed: bool,
    previously_owned: bool,
    owner_alive: bool | None,
) -> Verdict:
    """What this pipeline may do with one topic or table.

    `owner_alive` is None when the operator cannot tell (e.g. it may not read the
    owner's namespace): a claim is then respected, never stolen.
    `previously_owned` means the pipeline's status lists it: created by this
    operator before claims existed, so it is claimed without an adopt entry.
    """
    label = LABELS[kind]
    if claim is not None and claim.owner.uid == me.uid:
        return Verdict(kind, name, Action.MANAGE)
    if claim is not None and owner_alive is not False:
        hint = (
            ""
            if owner_alive
            else f" (if that pipeline no longer exists, release the claim with "
            f"`kubectl delete sinkclaim {claim.object_name}`)"
        )
        return Verdict(
            kind,
            name,
            Action.CONFLICT,
            f"{label} {name} belongs to pipeline {claim.owner}{hint}; this pipeline touches "
            f"nothing of it: choose another {label} name",
        )
    stale = claim  # None, or a claim whose owner was deleted
    if not exists:
        action = Action.TAKE_OVER if stale else Action.CLAIM
        return Verdict(kind, name, action, stale=stale)
    if adopt_listed or previously_owned:
        action = Action.TAKE_OVER if stale else Action.ADOPT
        return Verdict(kind, name, action, stale=stale, adopted=adopt_listed)
    was = f" (its last owner, pipeline {stale.owner}, is gone)" if stale else ""
    return Verdict(
        kind,
        name,
        Action.ADOPTION_REQUIRED,
        f"{label} {name} already exists and no pipeline owns it{was}: the operator takes "
        f"nothing over implicitly; list it in {ADOPT_FIELDS[kind]} to manage it from this "
        f"pipeline, or choose another {label} name",
    )

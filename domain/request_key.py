"""RequestKey: an `X-REQUEST-ID` belongs to one request of one platform (spec §7.1, §11.17).

A Strategy's or an Operation's id derives from (platform, request id), so a replay finds what
it made; but each kind has its own namespace, so the same request id could still create a
Strategy, then an Operation, then change a Trader. One key per (platform, request id), saved in
the same atomic write as the change it stands for, closes that: the second claim of an id,
whatever its kind, meets the first (a version conflict if both race) and is either the same
request again (a replay) or another request (a conflict, 409).
"""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids


class RequestKey(Aggregate):
    @staticmethod
    def create_id(
        platform_id: str, request_id: UUID, kind: str, fingerprint: str, target: UUID
    ) -> UUID:
        del kind, fingerprint, target
        return ids.request_key_id(platform_id, request_id)

    @event("Claimed")
    def __init__(
        self, platform_id: str, request_id: UUID, kind: str, fingerprint: str, target: UUID
    ) -> None:
        """`kind` is the command (`create_strategy`, `enroll`, `update_trader`...), `target`
        the aggregate it created or changed, `fingerprint` a hash of what was asked."""
        self.platform_id = platform_id
        self.request_id = request_id
        self.kind = kind
        self.fingerprint = fingerprint
        self.target = target

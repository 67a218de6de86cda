"""The requests a tenant holds open: task event streams and synchronous OpenAI calls.

Each one holds a slot of its tenant in this gateway process for as long as it is open,
at most ``SYNTHGATE_OPEN_STREAMS_PER_TENANT`` at once; one more is refused with 429
``Throttling`` (before anything is submitted, for an OpenAI call). Replays of an
idempotent OpenAI call take slots like any other call. The slots are counted per process
(a process-level table, explicit about it): with N gateway processes a tenant holds at
most N times the cap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.edge.errors import Throttling

RETRY_AFTER_SECONDS = 5


class OpenStreams:
    """Slots of open streams and waits, per tenant, in this process."""

    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._open: Counter[str] = Counter()

    def check(self, tenant: str) -> None:
        """:class:`Throttling` when ``tenant`` has no free slot."""
        if self._open[tenant] >= self.per_tenant:
            raise Throttling(
                f"Too many open requests: at most {self.per_tenant} task event streams and "
                "synchronous image calls at once per tenant; close one or retry later.",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

    @contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """A slot of ``tenant`` for the block (or :class:`Throttling`)."""
        self.check(tenant)
        self._open[tenant] += 1
        try:
            yield
        finally:
            self._open[tenant] -= 1
            if self._open[tenant] <= 0:
                del self._open[tenant]

"""Per-request priority within a tenant's share of a pool.

A submit may ask for ``interactive``, ``normal`` (the default, what every DashScope
client gets) or ``batch``, in ``parameters.priority`` or the ``X-Synthgate-Priority``
header (read by :mod:`gateway.intake.options`). Priority orders a tenant's own waiting
tasks only: the fair queue still picks *which tenant* goes next by stride scheduling
(see :mod:`taskcore.fairqueue`), then takes that tenant's oldest ``interactive`` task,
else its oldest ``normal`` one, else its oldest ``batch`` one. So no tenant gains on
another by marking everything interactive.
"""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    """A task's place among its tenant's waiting tasks, highest first."""

    INTERACTIVE = "interactive"
    NORMAL = "normal"
    BATCH = "batch"


# The order the fair queue serves a tenant's levels in (taskcore.fairqueue's FQ_LEVELS).
ORDER: tuple[Priority, ...] = (Priority.INTERACTIVE, Priority.NORMAL, Priority.BATCH)

"""Per-request priority within a tenant's share of a pool.

A submit may ask for ``interactive``, ``normal`` (the default, what every DashScope
client gets) or ``batch``, in ``parameters.priority`` or the ``X-Synthgate-Priority``
header. Priority orders a tenant's own waiting tasks only: the fair queue still picks
*which tenant* goes next by stride scheduling (see :mod:`gateway.fairqueue`), then takes
that tenant's oldest ``interactive`` task, else its oldest ``normal`` one, else its
oldest ``batch`` one. So no tenant gains on another by marking everything interactive.
"""

from __future__ import annotations

from enum import StrEnum

from gateway.errors import InvalidParameter

HEADER = "x-synthgate-priority"


class Priority(StrEnum):
    """A task's place among its tenant's waiting tasks, highest first."""

    INTERACTIVE = "interactive"
    NORMAL = "normal"
    BATCH = "batch"


# The order the fair queue serves a tenant's levels in (gateway.fairqueue's FQ_LEVELS).
ORDER: tuple[Priority, ...] = (Priority.INTERACTIVE, Priority.NORMAL, Priority.BATCH)

_NAMES = ", ".join(f"'{p.value}'" for p in ORDER)


def parse_priority(
    header: str | None, value: object, field: str = "parameters.priority"
) -> Priority:
    """The priority a submit asks for: its body's ``field`` (``value``, None when absent) or
    the header (not two different ones); ``normal`` when neither is given."""
    from_body = _level(value, f"Field '{field}'") if value is not None else None
    from_header = _level(header, "Header 'X-Synthgate-Priority'") if header is not None else None
    if from_body is not None and from_header is not None and from_body is not from_header:
        raise InvalidParameter(
            f"Field '{field}' ({from_body.value}) and header 'X-Synthgate-Priority' "
            f"({from_header.value}) disagree; send one of them."
        )
    return from_body or from_header or Priority.NORMAL


def _level(value: object, what: str) -> Priority:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return Priority(value.strip().lower())
    except ValueError:
        raise InvalidParameter(f"{what} must be one of {_NAMES}, got {value!r:.60}.") from None

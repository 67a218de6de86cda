"""Cross-request batching: which tasks may share one pipeline call, and how they are split.

Tasks share a call when they have the same model, size and steps; each of their
images keeps its own prompt, negative prompt, guidance scale and seed. A
consumer that holds several queued tasks groups them with
:func:`group_batchable` and hands each group to
``DiffusersBackend.generate_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskcore.contract import GenerationRequest
from workers.backends.sampling import ImageSpec

BatchKey = tuple[str, int, int, int]
"""What tasks of one batch share: model, width, height, steps."""


def batch_key(request: GenerationRequest) -> BatchKey:
    """The key under which ``request`` may join a batch."""
    return (request.model, request.width, request.height, request.steps)


def check_batchable(requests: Sequence[GenerationRequest]) -> None:
    """Raise ValueError unless ``requests`` is non-empty with one model, size and steps."""
    if not requests:
        raise ValueError("a batch needs at least one task")
    for name, values in (
        ("models", {r.model for r in requests}),
        ("sizes", {r.size for r in requests}),
        ("step counts", {r.steps for r in requests}),
    ):
        if len(values) > 1:
            raise ValueError(
                "tasks of one batch need the same model, size and steps; "
                f"got {len(values)} {name}: {', '.join(sorted(map(str, values)))}"
            )


def image_specs(requests: Sequence[GenerationRequest]) -> list[ImageSpec]:
    """Every image of ``requests``, task by task; image i of a task uses its seed + i."""
    return [
        ImageSpec(r.prompt, r.negative_prompt, r.scale, seed)
        for r in requests
        for seed in r.seeds()
    ]


def group_batchable(requests: Sequence[GenerationRequest], max_images: int) -> list[list[int]]:
    """Indices of ``requests`` grouped into batches, in arrival order.

    A group holds tasks of one :func:`batch_key` and at most ``max_images``
    images, except a lone task that has more (it is split inside its call).
    """
    groups: list[list[int]] = []
    open_groups: dict[BatchKey, tuple[list[int], int]] = {}
    for index, request in enumerate(requests):
        key = batch_key(request)
        group, images = open_groups.get(key, ([], 0))
        if group and images + request.n > max_images:
            group, images = [], 0
        if not group:
            groups.append(group)
        group.append(index)
        open_groups[key] = (group, images + request.n)
    return groups

"""Cross-request batching: which tasks may share one pipeline call, and how they are split.

Tasks share a call when they have the same model, size and steps (:func:`batch_key`);
each of their images keeps its own prompt, negative prompt, guidance scale and seed.
The GPU consumer forms batches from its pool's queue (:mod:`workers.batches`,
``batch_take.lua``, which compares the same four fields) and hands each to
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

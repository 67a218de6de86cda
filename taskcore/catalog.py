"""The models synthgate serves: their size rules, defaults, pipeline kind and pool queue."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One servable model and the rules its parameters follow."""

    name: str
    kind: str  # the local pipeline family: "sd15" or "sdxl"
    queue: str  # the Celery queue of the pool that runs it
    default_size: tuple[int, int]
    sizes: frozenset[tuple[int, int]]

    def describe_sizes(self) -> str:
        if len(self.sizes) == 1:
            ((w, h),) = self.sizes
            return f"fixed at {w}*{h}"
        sides = sorted({w for w, _ in self.sizes})
        return f"width and height each one of {', '.join(map(str, sides))}"


_XL_SIDES = range(512, 1025, 128)

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="stable-diffusion-xl",
            kind="sdxl",
            queue="gpu.sdxl",
            default_size=(1024, 1024),
            sizes=frozenset((w, h) for w in _XL_SIDES for h in _XL_SIDES),
        ),
        ModelSpec(
            name="stable-diffusion-v1.5",
            kind="sd15",
            queue="gpu.sd15",
            default_size=(512, 512),
            sizes=frozenset({(512, 512)}),
        ),
    )
}

LOCAL_QUEUES: tuple[str, ...] = tuple(sorted({spec.queue for spec in MODELS.values()}))

UPSTREAM_QUEUE = "upstream"

"""Cross-request batching: several tasks in one pipeline call, each image as if made alone."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from taskcore.contract import GenerationRequest, ImageOutcome
from workers.backends.diffusion import DiffusersBackend, StepHook
from workers.backends.optimizations import PipelineOptions
from workers.backends.sampling import ImageSpec

SD15 = "stable-diffusion-v1.5"
SDXL = "stable-diffusion-xl"
# PNG rounding of float pixels that differ by float noise may flip one level.
ROUNDING = 1
# Control: what a real difference (another guidance scale or negative prompt) looks like.
DIFFERENT = 8


def task(
    model: str = SD15,
    prompt: str = "a lighthouse at dusk",
    negative: str = "",
    scale: float = 7.0,
    seed: int = 1,
    n: int = 1,
    size: tuple[int, int] = (512, 512),
    steps: int = 2,
) -> GenerationRequest:
    return GenerationRequest(model, prompt, negative, size[0], size[1], n, steps, scale, seed)


def pixels(outcome: ImageOutcome) -> np.ndarray:
    assert outcome.png is not None, outcome
    with Image.open(io.BytesIO(outcome.png)) as image:
        return np.asarray(image, dtype=np.int16)


def max_difference(first: ImageOutcome, second: ImageOutcome) -> int:
    return int(np.abs(pixels(first) - pixels(second)).max())


def assert_each_equals_alone(
    backend: DiffusersBackend,
    kind: str,
    tasks: Sequence[GenerationRequest],
    batched: list[list[ImageOutcome]],
) -> None:
    assert [len(outcomes) for outcomes in batched] == [t.n for t in tasks]
    for request, outcomes in zip(tasks, batched, strict=True):
        alone = backend.generate(kind, request)
        assert [o.index for o in outcomes] == list(range(request.n))
        for together, single in zip(outcomes, alone, strict=True):
            assert max_difference(together, single) <= ROUNDING, request


class RecordingBackend(DiffusersBackend):
    """Records the image count of each batched call; fails them all when ``fail`` is set,
    and turns the images of prompts with ``nan_word`` into NaNs (as fp16 can at a larger
    batch; a task's call alone is the real one)."""

    def __init__(
        self, *args: Any, fail: bool = False, nan_word: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fail = fail
        self.nan_word = nan_word
        self.calls: list[int] = []

    def _run_batch(
        self,
        pipe: Any,
        specs: Sequence[ImageSpec],
        shape: GenerationRequest,
        on_step: StepHook | None,
    ) -> np.ndarray:
        self.calls.append(len(specs))
        if self.fail:
            raise RuntimeError("CUDA out of memory (simulated)")
        images = super()._run_batch(pipe, specs, shape, on_step)
        for i, spec in enumerate(specs):
            if self.nan_word and self.nan_word in spec.prompt:
                images[i] = np.nan
        return images


@pytest.fixture(scope="module")
def backend(demo_weights_dir: Path) -> DiffusersBackend:
    return DiffusersBackend({"sd15": None, "sdxl": None}, demo_weights_dir, device="cpu")


def test_sd15_tasks_batched_together_equal_each_task_made_alone(
    backend: DiffusersBackend,
) -> None:
    tasks = [
        task(negative="blurry", scale=7.0, seed=10, n=2),
        task(prompt="a red fox in snow", negative="", scale=3.0, seed=99),
        task(prompt="an empty room", negative="people", scale=1.0, seed=5),  # unguided
        # Same prompt and seed as the first task's first image; other scale and negative.
        task(negative="dark", scale=12.0, seed=10),
    ]
    batched = backend.generate_batch("sd15", tasks)
    assert_each_equals_alone(backend, "sd15", tasks, batched)
    assert max_difference(batched[0][0], batched[3][0]) > DIFFERENT


def test_sdxl_tasks_batched_together_equal_each_task_made_alone(
    backend: DiffusersBackend,
) -> None:
    # Alone, SDXL encodes an empty negative prompt as zeros; batched with others it must too.
    tasks = [
        task(SDXL, negative="", scale=5.0, seed=3, size=(640, 512)),
        task(SDXL, prompt="a red fox", negative="blurry", scale=9.0, seed=3, size=(640, 512)),
        task(SDXL, prompt="a red fox", negative="", scale=9.0, seed=3, n=2, size=(640, 512)),
    ]
    batched = backend.generate_batch("sdxl", tasks)
    assert_each_equals_alone(backend, "sdxl", tasks, batched)
    assert max_difference(batched[1][0], batched[2][0]) > DIFFERENT


def test_changing_one_tasks_scale_changes_only_its_images(backend: DiffusersBackend) -> None:
    first = [task(scale=4.0, seed=20), task(prompt="a boat", scale=8.0, seed=21)]
    second = [first[0], task(prompt="a boat", scale=14.0, seed=21)]
    before, after = backend.generate_batch("sd15", first), backend.generate_batch("sd15", second)
    assert max_difference(before[0][0], after[0][0]) <= ROUNDING
    assert max_difference(before[1][0], after[1][0]) > DIFFERENT


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([], "at least one task"),
        ([task(), task(size=(512, 768))], "2 sizes: 512\\*512, 512\\*768"),
        ([task(), task(steps=3)], "2 step counts: 2, 3"),
        ([task(), task(SDXL)], "2 models"),
        ([task(SDXL), task(SDXL)], "not served by the 'sd15' pipeline"),
    ],
)
def test_tasks_that_cannot_share_a_batch_are_refused(
    backend: DiffusersBackend, tasks: list[GenerationRequest], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        backend.generate_batch("sd15", tasks)


def test_a_batch_larger_than_max_batch_is_split_into_calls(demo_weights_dir: Path) -> None:
    small = RecordingBackend(
        {"sd15": None}, demo_weights_dir, device="cpu", options=PipelineOptions(max_batch=3)
    )
    tasks = [task(seed=1, n=2), task(seed=7, scale=3.0, n=2), task(seed=9, negative="fog")]
    steps: list[tuple[int, int]] = []
    batched = small.generate_batch("sd15", tasks, on_step=lambda *progress: steps.append(progress))
    assert small.calls == [3, 2]
    assert [len(outcomes) for outcomes in batched] == [2, 2, 1]
    # PNDM makes 2 steps in 3 model calls; the hook runs through them once per call.
    assert steps == [(1, 3), (2, 3), (3, 3)] * 2
    assert_each_equals_alone(small, "sd15", tasks, batched)


def test_a_failed_batch_makes_each_task_alone(demo_weights_dir: Path) -> None:
    failing = RecordingBackend({"sd15": None}, demo_weights_dir, device="cpu", fail=True)
    tasks = [task(seed=30, n=2), task(seed=40, scale=2.0)]
    batched = failing.generate_batch("sd15", tasks)
    assert failing.calls == [3]
    assert [[o.index for o in outcomes] for outcomes in batched] == [[0, 1], [0]]
    for request, outcomes in zip(tasks, batched, strict=True):
        alone = failing.generate("sd15", request)
        assert [o.png for o in outcomes] == [o.png for o in alone]


def test_a_task_with_nans_in_a_batch_is_made_again_alone(demo_weights_dir: Path) -> None:
    backend = RecordingBackend({"sd15": None}, demo_weights_dir, device="cpu", nan_word="overflow")
    tasks = [task(seed=3), task(prompt="an overflow", seed=4, n=2), task(seed=5)]
    steps: list[list[tuple[int, int]]] = [[], [], []]
    batched = backend.generate_batch(
        "sd15", tasks, task_steps=[lambda *p, i=i: steps[i].append(p) for i in range(3)]
    )
    assert all(o.ok for outcomes in batched for o in outcomes)
    assert_each_equals_alone(backend, "sd15", tasks, batched)
    assert backend.calls == [4]  # one batched call; the task with NaNs was made alone after
    assert steps[1] and not steps[0] and not steps[2]  # only the task made again reported

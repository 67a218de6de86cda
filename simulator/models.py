"""DashScope's text-to-image models as the simulator mirrors them: rules, result fields, limits.

This is the simulator's own table of what DashScope does (docs/upstream-models.md has the
sources and what is unconfirmed), not synthgate's catalog: the simulator imports nothing of
synthgate, so that a gateway bug cannot hide behind a simulator that shares its rules.
Parameters DashScope is not known to check are not checked; unknown parameters are ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

_SIZE = re.compile(r"^\s*(\d{1,5})\s*\*\s*(\d{1,5})\s*$")
_MAX_SEED = 2**31 - 1


class ParameterError(ValueError):
    """A request DashScope answers with 400 ``InvalidParameter`` (the message says why)."""


@dataclass(frozen=True, slots=True)
class SizeRule:
    """The sizes a model takes: an explicit list, or sides, area and aspect-ratio bounds."""

    default: tuple[int, int]
    choices: frozenset[tuple[int, int]] = frozenset()
    min_side: int = 0
    max_side: int = 0
    min_pixels: int = 0
    max_pixels: int = 0
    max_ratio: float = 0.0  # longer side / shorter side

    def problem(self, width: int, height: int) -> str | None:
        """Why ``width*height`` is refused, or None when it is taken."""
        if self.choices:
            if (width, height) in self.choices:
                return None
            listed = ", ".join(f"{w}*{h}" for w, h in sorted(self.choices))
            return f"one of {listed}"
        if self.min_side and min(width, height) < self.min_side:
            return f"sides of at least {self.min_side}"
        if self.max_side and max(width, height) > self.max_side:
            return f"sides of at most {self.max_side}"
        if self.min_pixels and width * height < self.min_pixels:
            return f"at least {self.min_pixels} pixels"
        if self.max_pixels and width * height > self.max_pixels:
            return f"at most {self.max_pixels} pixels"
        if self.max_ratio and max(width, height) > self.max_ratio * min(width, height):
            return f"an aspect ratio within 1:{self.max_ratio:g} and {self.max_ratio:g}:1"
        return None


@dataclass(frozen=True, slots=True)
class SimModel:
    """One DashScope model: what it takes, what its results carry, its documented limits."""

    name: str
    size: SizeRule
    n_default: int
    n_max: int = 4
    seed_max: int = _MAX_SEED
    sync: bool = False  # answers a POST without X-DashScope-Async (ImageSynthesis.sync_call)
    prompt_extend: bool = False  # takes prompt_extend (default on) and watermark
    prompt_results: bool = False  # results carry orig_prompt (and actual_prompt when extended)
    wanx_v1: bool = False  # takes style, ref_img, ref_strength, ref_mode
    steps_scale: bool = False  # takes steps and scale (Stable Diffusion)
    task_metrics: bool = True  # the task's answer carries task_metrics
    submits_per_second: float = 2.0  # documented per account and model
    max_running: int = 2  # documented: tasks PENDING or RUNNING per account and model

    def check(self, params: Mapping[str, Any]) -> Checked:
        """The parameters DashScope would run with, or :class:`ParameterError`."""
        width, height = self._size(params.get("size"))
        n = self._n(params.get("n"))
        seed = _integer(params, "seed", 0, self.seed_max)
        extend = False
        if self.prompt_extend:
            extend = _boolean(params, "prompt_extend", True)
            _boolean(params, "watermark", False)
        if self.wanx_v1:
            _choice(params, "style", WANX_V1_STYLES)
            _number(params, "ref_strength", 0.0, 1.0)
            _choice(params, "ref_mode", ("repaint", "refonly"))
        if self.steps_scale:
            _integer(params, "steps", 1, 500)
            _number(params, "scale", 1, 15)
        return Checked(width, height, n, seed, extend)

    def _size(self, value: object) -> tuple[int, int]:
        if value is None:
            return self.size.default
        match = _SIZE.match(value) if isinstance(value, str) else None
        if match is None:
            raise ParameterError(f"The size {value!r} is invalid: it must be 'width*height'.")
        width, height = int(match[1]), int(match[2])
        problem = self.size.problem(width, height)
        if problem is not None:
            raise ParameterError(
                f"The size {width}*{height} is not supported by {self.name}: {problem}."
            )
        return width, height

    def _n(self, value: object) -> int:
        if value is None:
            return self.n_default
        if not _is_int(value):
            raise ParameterError("'n' must be Integer")
        n = value
        if self.n_max == 1 and n != 1:
            raise ParameterError("num_images_per_prompt must be 1")
        if not 1 <= n <= self.n_max:
            raise ParameterError(f"Range of n should be [1, {self.n_max}]")
        return n


@dataclass(frozen=True, slots=True)
class Checked:
    """A submit's parameters after DashScope's checks and defaults."""

    width: int
    height: int
    n: int
    seed: int | None
    prompt_extend: bool


WANX_V1_STYLES = (
    "<auto>",
    "<photography>",
    "<portrait>",
    "<3d cartoon>",
    "<anime>",
    "<oil painting>",
    "<watercolor>",
    "<sketch>",
    "<chinese painting>",
    "<flat illustration>",
)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise ParameterError(f"'{name}' must be Integer")
    if not low <= value <= high:
        raise ParameterError(f"Range of {name} should be [{low}, {high}]")
    return value


def _number(params: Mapping[str, Any], name: str, low: float, high: float) -> None:
    value = params.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"'{name}' must be Float")
    if not low <= value <= high:
        raise ParameterError(f"Range of {name} should be [{low:g}, {high:g}]")


def _boolean(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ParameterError(f"'{name}' must be Bool")
    return value


def _choice(params: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise ParameterError(f"The {name} is invalid: one of {', '.join(allowed)}.")


def _sides(low: int, high: int, step: int) -> frozenset[tuple[int, int]]:
    return frozenset((w, h) for w in range(low, high + 1, step) for h in range(low, high + 1, step))


_V2_SIZE = SizeRule(default=(1024, 1024), min_side=512, max_side=1440)
# wan2.5: area 768*768 (earlier copies; 1280*1280 now) to 1440*1440, ratio 1:4..4:1.
_WAN25_SIZE = SizeRule(
    default=(1280, 1280), min_pixels=768 * 768, max_pixels=1440 * 1440, max_ratio=4.0
)
_QWEN_SIZE = SizeRule(
    default=(1664, 928),
    choices=frozenset(
        {(1664, 928), (1472, 1104), (1328, 1328), (1104, 1472), (928, 1664)}
        | {(1472, 1140), (1140, 1472)}  # listed in 2025 copies of the page
    ),
)


def _v2(name: str, *, sync: bool = False) -> SimModel:
    return SimModel(
        name=name, size=_V2_SIZE, n_default=4, sync=sync, prompt_extend=True, prompt_results=True
    )


def _qwen(name: str) -> SimModel:
    return SimModel(
        name=name,
        size=_QWEN_SIZE,
        n_default=1,
        n_max=1,
        prompt_extend=True,
        prompt_results=True,
        task_metrics=False,  # not in any of the page's examples
    )


def _sd(name: str, size: SizeRule) -> SimModel:
    return SimModel(
        name=name,
        size=size,
        n_default=1,
        seed_max=2**32 - 1,  # not stated: permissive
        steps_scale=True,
        max_running=1,  # "further jobs wait queued" on DashScope; here they are throttled
    )


MODELS: dict[str, SimModel] = {
    model.name: model
    for model in (
        SimModel(
            name="wanx-v1",
            size=SizeRule(
                default=(1024, 1024),
                choices=frozenset({(1024, 1024), (720, 1280), (1280, 720), (768, 1152)}),
            ),
            n_default=4,
            seed_max=4294967290,
            wanx_v1=True,
            max_running=1,
        ),
        _v2("wanx2.0-t2i-turbo"),
        _v2("wanx2.1-t2i-turbo"),
        _v2("wanx2.1-t2i-plus"),
        _v2("wan2.2-t2i-flash", sync=True),
        _v2("wan2.2-t2i-plus", sync=True),
        SimModel(
            name="wan2.5-t2i-preview",
            size=_WAN25_SIZE,
            n_default=4,
            prompt_extend=True,
            prompt_results=True,
            submits_per_second=5.0,
            max_running=5,
        ),
        _qwen("qwen-image"),
        _qwen("qwen-image-plus"),
        _sd("stable-diffusion-xl", SizeRule(default=(1024, 1024), choices=_sides(512, 1024, 128))),
        _sd(
            "stable-diffusion-v1.5",
            SizeRule(default=(512, 512), choices=frozenset({(512, 512)})),
        ),
    )
}

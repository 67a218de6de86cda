"""Property tests of parse_submit: any JSON value gives a valid request or a DashScope error."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contracts.dashscope import MAX_PROMPT_WORDS, MAX_SEED, builtin_catalog, parse_submit
from gateway.edge.errors import ApiError
from taskcore.contract import GenerationRequest

CODES = {
    "InvalidParameter",
    "BadRequest.EmptyModel",
    "BadRequest.EmptyInput",
    "BadRequest.EmptyParameters",
}

# What a strict JSON decoder can give (gateway.edge.bodies.decode_json): no NaN, no infinities,
# no lone surrogates (st.text() leaves them out).
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _or_junk(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``strategy``, one time in ten any JSON value."""
    return st.integers(0, 9).flatmap(lambda k: JSON if k == 9 else strategy)


_SIDE = st.sampled_from([384, 512, 640, 768, 896, 1000, 1024, 1152]) | st.integers(0, 99_999)
_SIZE = st.builds("{}*{}".format, _SIDE, _SIDE)
_PARAMETERS = st.fixed_dictionaries(
    {},
    optional={
        "size": _or_junk(_SIZE | st.sampled_from(["1024*1024", "512*512", " 768 * 512 "])),
        "n": _or_junk(st.integers(0, 5) | st.sampled_from([1.0, 2.5, True])),
        "steps": _or_junk(st.integers(-1, 600)),
        "scale": _or_junk(st.floats(0, 20) | st.integers(0, 20)),
        "seed": _or_junk(st.integers(-5, MAX_SEED + 5)),
    },
)
_INPUT = st.fixed_dictionaries(
    {"prompt": _or_junk(st.text(min_size=1, max_size=300) | st.just("word " * 200))},
    optional={"negative_prompt": _or_junk(st.text(max_size=50))},
)
# The Stable Diffusion models, whose rules these properties check (the others' are in
# test_catalog_rules.py).
SD_MODELS = ("stable-diffusion-xl", "stable-diffusion-v1.5")
NEAR_VALID = st.fixed_dictionaries(
    {
        "model": _or_junk(st.sampled_from([*SD_MODELS, *SD_MODELS, "", "stable-diffusion-9"])),
        "input": _or_junk(_INPUT),
    },
    optional={"parameters": _or_junk(_PARAMETERS), "extra": JSON},
)


def _check(body: object) -> None:
    try:
        job = parse_submit(body)
    except ApiError as exc:
        assert exc.status_code == 400
        assert exc.code in CODES
        assert 0 < len(exc.message) < 400
        return
    _check_valid(job)


def _check_valid(job: GenerationRequest) -> None:
    spec = builtin_catalog()[job.model]
    assert spec.size.allows(job.width, job.height)
    assert 1 <= job.n <= 4 and 1 <= job.steps <= 500 and 1 <= job.scale <= 15
    assert isinstance(job.n, int) and isinstance(job.steps, int) and isinstance(job.seed, int)
    assert 0 <= job.seed <= MAX_SEED
    assert job.prompt.strip() and len(job.prompt.split()) <= MAX_PROMPT_WORDS
    assert len(job.negative_prompt.split()) <= MAX_PROMPT_WORDS
    assert GenerationRequest.from_json(job.to_json()) == job  # storable as the worker reads it


@settings(max_examples=400, derandomize=True, deadline=None)
@given(JSON)
def test_any_json_value_is_a_request_or_a_dashscope_error(body: object) -> None:
    _check(body)


@settings(max_examples=600, derandomize=True, deadline=None)
@given(NEAR_VALID)
def test_near_valid_bodies_are_requests_in_range_or_dashscope_errors(body: object) -> None:
    _check(body)

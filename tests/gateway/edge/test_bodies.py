"""Strict JSON decoding of request bodies: every malformed body is a clear InvalidParameter."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.edge.bodies import MAX_DEPTH, decode_json
from gateway.edge.errors import ApiError, InvalidParameter


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        ('{"model": "caf\u00e9"}'.encode("latin-1"), "UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "UTF-8"),
        (b"{not json", "not valid JSON"),
        (b'{"a": 1} {"b": 2}', "not valid JSON"),
        (b'{"scale": NaN}', "NaN"),
        (b'{"scale": Infinity}', "Infinity"),
        (b'{"scale": -Infinity}', "-Infinity"),
        (b'{"scale": 1e999}', "out of range"),
        (b'{"seed": 1' + b"0" * 5000 + b"}", "not valid JSON"),
        (b'{"model": "a", "model": "b"}', "'model' twice"),
        (b'{"input": {"prompt": "a", "prompt": "b"}}', "'prompt' twice"),
        (b'{"input": {"prompt": "\\ud800"}}', "lone surrogate"),
        (b'{"\\udfff": 1}', "lone surrogate"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested"),
        (b"[" * 60_000 + b"]" * 60_000, "nested"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "nested"),
    ],
    ids=lambda value: value[:24] if isinstance(value, bytes) else value,
)
def test_malformed_bodies_are_invalid_parameter_naming_the_problem(body: bytes, says: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        decode_json(body)
    assert says in caught.value.message
    assert len(caught.value.message) < 300  # no echo of a 64 KiB body


def test_a_non_json_content_type_is_named_in_the_error() -> None:
    with pytest.raises(InvalidParameter, match="multipart/form-data"):
        decode_json(b"--boundary\r\n", "multipart/form-data; boundary=boundary")


def test_plain_json_decodes_as_usual() -> None:
    body = {"model": "m", "input": {"prompt": "caf\u00e9 \U0001f431"}, "parameters": {"n": 2}}
    assert decode_json(json.dumps(body, ensure_ascii=False).encode()) == body
    assert decode_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_decode_or_raise_an_api_error(body: bytes) -> None:
    try:
        value = decode_json(body)
    except ApiError as exc:
        assert exc.status_code == 400 and exc.message
        return
    json.dumps(value).encode("utf-8")  # what decodes can be stored again


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(_JSON)
def test_any_json_document_round_trips(value: object) -> None:
    text = json.dumps(value, allow_nan=False)
    assert decode_json(text.encode()) == json.loads(text)

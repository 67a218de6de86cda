"""The model catalog: every model name synthgate serves, where it runs, and its parameter rules.

Built-in entries (``taskcore/models.yaml``: the two Stable Diffusion models on local GPU
pools, DashScope's current wanx/wan and qwen-image models upstream) are merged with an
operator's file named by ``SYNTHGATE_MODEL_CATALOG`` (YAML or JSON, the same format; an
entry replaces the built-in one of the same name). ``SYNTHGATE_ROUTES`` still overrides
where a model runs. Each entry says:

- where it runs: ``local`` (a GPU pool: pipeline ``family`` ``sd15``/``sdxl``, the pool's
  queue and optionally a weights folder, so a company fine-tune is served under its own
  name), ``upstream`` (DashScope, each model its own pool ``upstream.<name>`` so account
  limits hold per model), or ``both`` (local, spilling over to upstream);
- its rules: sizes, ``n``, ``steps``/``scale``/``seed`` where they apply, prompt lengths,
  and the other fields it takes (``prompt_extend``, ``watermark``, ``style``, ``ref_img``,
  ...), each with its type, range or choices, default, and whether DashScope takes it in
  ``input`` or ``parameters``.

The catalog is built once at start-up (:meth:`taskcore.settings.Settings.catalog`) and a
bad file stops the process with a message naming the entry and the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

Runs = Literal["local", "upstream", "both"]
FieldType = Literal["bool", "integer", "number", "choice", "url", "string"]
FAMILIES = ("sd15", "sdxl")
UPSTREAM_POOL_PREFIX = "upstream."


class CatalogError(ValueError):
    """A bad catalog entry; the message names the model and the problem."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """A numeric parameter's range and default (None: the model's own default applies)."""

    low: float
    high: float
    default: float | None = None

    def describe(self) -> str:
        return f"between {self.low:g} and {self.high:g}"


@dataclass(frozen=True, slots=True)
class SizeRule:
    """The sizes a model makes: an explicit list, or sides in a range (and a pixel cap)."""

    default: tuple[int, int]
    choices: frozenset[tuple[int, int]] = frozenset()
    min_side: int = 0
    max_side: int = 0
    max_pixels: int = 0

    def allows(self, width: int, height: int) -> bool:
        if self.choices:
            return (width, height) in self.choices
        if not (
            self.min_side <= width <= self.max_side and self.min_side <= height <= self.max_side
        ):
            return False
        return not self.max_pixels or width * height <= self.max_pixels

    def describe(self) -> str:
        if len(self.choices) == 1:
            ((w, h),) = self.choices
            return f"fixed at {w}*{h}"
        if self.choices:
            sides = sorted({w for w, _ in self.choices} | {h for _, h in self.choices})
            if len(self.choices) == len(sides) ** 2:
                return f"width and height each one of {', '.join(map(str, sides))}"
            return "one of " + ", ".join(f"{w}*{h}" for w, h in sorted(self.choices))
        text = f"width and height each between {self.min_side} and {self.max_side}"
        return text + (f", at most {self.max_pixels} pixels" if self.max_pixels else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": _size_text(self.default)}
        if self.choices:
            out["choices"] = [_size_text(size) for size in sorted(self.choices)]
        else:
            out.update(min_side=self.min_side, max_side=self.max_side)
            if self.max_pixels:
                out["max_pixels"] = self.max_pixels
        return out


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One more field a model takes, as DashScope names it."""

    name: str
    type: FieldType
    where: Literal["input", "parameters"] = "parameters"
    default: Any = None
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    max_chars: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "in": self.where}
        if self.default is not None:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        if self.low is not None:
            out["min"], out["max"] = self.low, self.high
        if self.max_chars:
            out["max_chars"] = self.max_chars
        return out


@dataclass(frozen=True, slots=True)
class TextRule:
    """How long a prompt may be; a longer one is truncated, as DashScope does."""

    max_words: int = 0
    max_chars: int = 0

    def apply(self, text: str) -> str:
        text = text.strip()
        if self.max_words:
            words = text.split()
            if len(words) > self.max_words:
                text = " ".join(words[: self.max_words])
        if self.max_chars:
            text = text[: self.max_chars]
        return text

    def to_json(self) -> dict[str, int]:
        return {
            k: v for k, v in (("max_words", self.max_words), ("max_chars", self.max_chars)) if v
        }


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One servable model: where it runs and the rules its parameters follow."""

    name: str
    runs: Runs
    size: SizeRule
    n: Bounds
    prompt: TextRule = TextRule()
    negative_prompt: TextRule | None = TextRule()
    steps: Bounds | None = None
    scale: Bounds | None = None
    seed: Bounds | None = None
    fields: Mapping[str, FieldRule] = field(default_factory=dict)
    family: str = ""  # the local pipeline family, "sd15" or "sdxl"
    pool: str = ""  # the local GPU pool (Celery queue)
    weights: Path | None = None  # a local weights folder; None: the family's setting
    upstream_model: str = ""  # DashScope's name for it
    sync: bool = False  # DashScope answers it without X-DashScope-Async

    @property
    def local(self) -> bool:
        return self.runs in ("local", "both")

    @property
    def upstream(self) -> bool:
        return self.runs in ("upstream", "both")

    @property
    def upstream_pool(self) -> str:
        """The pool (Celery queue) of this model's upstream tasks."""
        return UPSTREAM_POOL_PREFIX + self.name

    def pools(self) -> list[str]:
        """Every pool this model's tasks can go to."""
        return ([self.pool] if self.local else []) + ([self.upstream_pool] if self.upstream else [])

    def describe_sizes(self) -> str:
        return self.size.describe()

    def to_json(self) -> dict[str, Any]:
        """The model and its rules, as ``GET /api/v1/models`` shows them."""
        out: dict[str, Any] = {"model": self.name, "runs": self.runs, "sync": self.sync}
        out["size"] = self.size.to_json()
        out["n"] = _bounds_json(self.n)
        for name in ("steps", "scale", "seed"):
            bounds = getattr(self, name)
            if bounds is not None:
                out[name] = _bounds_json(bounds)
        out["prompt"] = self.prompt.to_json()
        if self.negative_prompt is not None:
            out["negative_prompt"] = self.negative_prompt.to_json()
        out["fields"] = {name: rule.to_json() for name, rule in sorted(self.fields.items())}
        return out


@dataclass(frozen=True)
class Catalog:
    """Every model, by name, and the pools they use."""

    models: Mapping[str, ModelSpec]
    # Models the catalog names that this deployment cannot run, with the reason.
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __getitem__(self, name: str) -> ModelSpec:
        return self.models[name]

    def get(self, name: str) -> ModelSpec | None:
        return self.models.get(name)

    def names(self) -> list[str]:
        return sorted(self.models)

    def local_pools(self) -> tuple[str, ...]:
        return tuple(sorted({spec.pool for spec in self.models.values() if spec.local}))

    def upstream_pools(self) -> tuple[str, ...]:
        return tuple(sorted(s.upstream_pool for s in self.models.values() if s.upstream))

    def pools(self) -> tuple[str, ...]:
        return (*self.local_pools(), *self.upstream_pools())

    def model_of_pool(self, pool: str) -> ModelSpec | None:
        """The model an upstream pool serves (None for a local pool)."""
        if not is_upstream_pool(pool):
            return None
        return self.models.get(pool[len(UPSTREAM_POOL_PREFIX) :])

    def with_routes(self, routes: Mapping[str, Runs]) -> Catalog:
        """The catalog with ``SYNTHGATE_ROUTES`` applied over each named model's ``runs``."""
        models = dict(self.models)
        for name, runs in routes.items():
            spec = models.get(name)
            if spec is None:
                raise CatalogError(f"unknown model {name!r}; known: {self.names()}")
            if runs != "upstream" and not spec.family:
                raise CatalogError(f"model {name!r} has no local pipeline family to run {runs}")
            models[name] = replace(spec, runs=runs)
        return Catalog(models, self.unavailable)

    def without_upstream(self) -> Catalog:
        """The catalog of a deployment with no DashScope account: upstream-only models are
        unavailable, and models that run both ways run locally only."""
        models, unavailable = {}, dict(self.unavailable)
        for name, spec in self.models.items():
            if spec.runs == "upstream":
                unavailable[name] = (
                    f"Model {name} runs on DashScope upstream, and no DashScope account is "
                    "configured (SYNTHGATE_UPSTREAM_ACCOUNTS or SYNTHGATE_UPSTREAM_API_KEY)."
                )
            else:
                models[name] = replace(spec, runs="local")
        return Catalog(models, unavailable)


def is_upstream_pool(pool: str) -> bool:
    return pool.startswith(UPSTREAM_POOL_PREFIX)


def load_catalog(path: Path | None = None) -> Catalog:
    """The built-in entries, with the entries of ``path`` (YAML or JSON) over them."""
    builtin = resources.files("taskcore").joinpath("models.yaml").read_text(encoding="utf-8")
    models = {spec.name: spec for spec in parse_entries(yaml.safe_load(builtin), "built-in")}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise CatalogError(f"cannot read the model catalog {path}: {exc}") from None
        for spec in parse_entries(data, str(path)):
            models[spec.name] = spec
    return Catalog(models)


def parse_entries(data: object, source: str) -> Iterable[ModelSpec]:
    """The entries of a catalog document (``{"models": [...]}``)."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"{source}: the catalog must be a mapping with a 'models' list")
    for index, entry in enumerate(data["models"]):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{source}: model {name!r}" if name else f"{source}: models[{index}]"
        try:
            yield _entry(entry)
        except (CatalogError, KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{where}: {exc}") from None


def _entry(entry: Any) -> ModelSpec:
    if not isinstance(entry, dict):
        raise CatalogError("an entry must be a mapping")
    name = str(entry["name"])
    if not name or len(name) > 64 or not all(c.isalnum() or c in "._-" for c in name):
        raise CatalogError("a name is 1-64 letters, digits, '.', '_' or '-'")
    runs = entry.get("runs", "upstream")
    if runs not in ("local", "upstream", "both"):
        raise CatalogError(f"runs must be local, upstream or both, not {runs!r}")
    family = str(entry.get("family") or "")
    if runs != "upstream" and family not in FAMILIES:
        raise CatalogError(f"a local model needs family {' or '.join(FAMILIES)}")
    if family and family not in FAMILIES:
        raise CatalogError(f"family must be one of {FAMILIES}, not {family!r}")
    weights = entry.get("weights") or None
    negative = entry.get("negative_prompt", {})
    return ModelSpec(
        name=name,
        runs=runs,
        family=family,
        pool=str(entry.get("pool") or (f"gpu.{family}" if family else "")),
        weights=Path(weights) if weights else None,
        upstream_model=str(entry.get("upstream_model") or name),
        sync=bool(entry.get("sync", False)),
        prompt=_text(entry.get("prompt") or {}),
        negative_prompt=None if negative is None else _text(negative),
        size=_size(entry["size"]),
        n=_bounds(entry.get("n") or {"min": 1, "max": 4, "default": 1}, integer=True),
        steps=_optional_bounds(entry.get("steps"), integer=True),
        scale=_optional_bounds(entry.get("scale"), integer=False),
        seed=_optional_bounds(entry.get("seed"), integer=True),
        fields={str(k): _field(str(k), v) for k, v in (entry.get("fields") or {}).items()},
    )


def _text(rule: Any) -> TextRule:
    return TextRule(
        max_words=int(rule.get("max_words", 0)), max_chars=int(rule.get("max_chars", 0))
    )


def _size(rule: Any) -> SizeRule:
    default = _parse_size(rule["default"])
    if "choices" in rule:
        choices = frozenset(_parse_size(text) for text in rule["choices"])
        if default not in choices:
            raise CatalogError("the default size must be one of the choices")
        return SizeRule(default=default, choices=choices)
    low, high = int(rule["min_side"]), int(rule["max_side"])
    if not 0 < low <= high:
        raise CatalogError("size needs 0 < min_side <= max_side")
    size = SizeRule(default, min_side=low, max_side=high, max_pixels=int(rule.get("max_pixels", 0)))
    if not size.allows(*default):
        raise CatalogError("the default size breaks the model's own size rule")
    return size


def _bounds(rule: Any, *, integer: bool) -> Bounds:
    cast = int if integer else float
    low, high = cast(rule["min"]), cast(rule["max"])
    default = rule.get("default")
    if low > high or (default is not None and not low <= cast(default) <= high):
        raise CatalogError(f"bad range {rule}")
    return Bounds(low, high, None if default is None else cast(default))


def _optional_bounds(rule: Any, *, integer: bool) -> Bounds | None:
    return None if rule is None else _bounds(rule, integer=integer)


def _field(name: str, rule: Any) -> FieldRule:
    kind = rule.get("type")
    if kind not in ("bool", "integer", "number", "choice", "url", "string"):
        raise CatalogError(f"field {name!r}: unknown type {kind!r}")
    where = rule.get("in", "parameters")
    if where not in ("input", "parameters"):
        raise CatalogError(f"field {name!r}: 'in' must be input or parameters")
    choices = tuple(str(c) for c in rule.get("choices") or ())
    if kind == "choice" and not choices:
        raise CatalogError(f"field {name!r}: a choice needs choices")
    low, high = rule.get("min"), rule.get("max")
    return FieldRule(
        name=name,
        type=kind,
        where=where,
        default=rule.get("default"),
        choices=choices,
        low=None if low is None else float(low),
        high=None if high is None else float(high),
        max_chars=int(rule.get("max_chars", 0)),
    )


def _parse_size(text: Any) -> tuple[int, int]:
    width, _, height = str(text).partition("*")
    return int(width), int(height)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}*{size[1]}"


def _bounds_json(bounds: Bounds) -> dict[str, float]:
    out = {"min": bounds.low, "max": bounds.high}
    if bounds.default is not None:
        out["default"] = bounds.default
    return out

"""The model catalog: built-in entries, an operator's file over them, routes, and the
messages a bad file gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskcore.catalog import CatalogError, load_catalog
from taskcore.settings import Settings, SettingsError
from taskcore.upstream_accounts import describe

FINE_TUNE = {
    "name": "acme-sdxl",
    "runs": "local",
    "family": "sdxl",
    "weights": "/models/acme-sdxl",
    "size": {"default": "1024*1024", "choices": ["1024*1024"]},
    "n": {"min": 1, "max": 2, "default": 1},
    "steps": {"min": 1, "max": 60, "default": 30},
    "scale": {"min": 1, "max": 10, "default": 5},
}
UPSTREAM_MODELS = {
    "wanx-v1",
    "wanx2.0-t2i-turbo",
    "wanx2.1-t2i-turbo",
    "wanx2.1-t2i-plus",
    "wan2.2-t2i-flash",
    "wan2.2-t2i-plus",
    "wan2.5-t2i-preview",
    "qwen-image",
    "qwen-image-plus",
}


def test_the_built_in_catalog_has_the_sd_models_locally_and_dashscopes_upstream() -> None:
    catalog = load_catalog()
    assert set(catalog.names()) == UPSTREAM_MODELS | {
        "stable-diffusion-xl",
        "stable-diffusion-v1.5",
    }
    assert catalog["stable-diffusion-xl"].pools() == ["gpu.sdxl"]
    assert catalog["wanx2.1-t2i-turbo"].pools() == ["upstream.wanx2.1-t2i-turbo"]
    assert {name for name in catalog.names() if catalog[name].sync} == {
        "wan2.2-t2i-flash",
        "wan2.2-t2i-plus",
    }


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_an_operators_file_adds_a_fine_tune_and_replaces_an_entry(
    tmp_path: Path, suffix: str
) -> None:
    replaced = {
        "name": "qwen-image",
        "runs": "upstream",
        "size": {"default": "1328*1328", "choices": ["1328*1328"]},
    }
    path = tmp_path / f"catalog{suffix}"
    path.write_text(json.dumps({"models": [FINE_TUNE, replaced]}))  # JSON is YAML too
    catalog = load_catalog(path)
    tune = catalog["acme-sdxl"]
    assert (tune.family, tune.pool, str(tune.weights)) == ("sdxl", "gpu.sdxl", "/models/acme-sdxl")
    assert catalog["qwen-image"].size.describe() == "fixed at 1328*1328"
    assert "wanx-v1" in catalog  # the others stay


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({**FINE_TUNE, "family": "sd3"}, "family"),
        ({**FINE_TUNE, "runs": "somewhere"}, "runs must be"),
        ({**FINE_TUNE, "size": {"default": "640*640", "choices": ["1024*1024"]}}, "default size"),
        ({**FINE_TUNE, "n": {"min": 3, "max": 2}}, "bad range"),
        ({**FINE_TUNE, "name": "bad name!"}, "a name is"),
        ({**FINE_TUNE, "fields": {"style": {"type": "choice"}}}, "needs choices"),
    ],
)
def test_a_bad_entry_names_the_model_and_the_problem(
    tmp_path: Path, entry: dict[str, object], problem: str
) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(json.dumps({"models": [entry]}))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value) and problem in str(caught.value)


def test_settings_refuse_a_bad_catalog_naming_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("models: [{name: x, runs: local}]")
    with pytest.raises(SettingsError, match="SYNTHGATE_MODEL_CATALOG"):
        Settings.from_env(model_catalog=path)
    with pytest.raises(SettingsError, match="SYNTHGATE_ROUTES: model 'wanx-v1' has no local"):
        Settings.from_env(routes={"wanx-v1": "local"}, upstream_api_key="sk-x")


def test_without_an_account_upstream_models_are_unavailable_and_both_runs_locally() -> None:
    catalog = Settings(routes={"stable-diffusion-xl": "both"}).catalog
    assert "wanx-v1" not in catalog and "DashScope account" in catalog.unavailable["wanx-v1"]
    assert catalog["stable-diffusion-xl"].runs == "local"
    with_key = Settings(routes={"stable-diffusion-xl": "both"}, upstream_api_key="sk-x").catalog
    assert with_key["stable-diffusion-xl"].pools() == ["gpu.sdxl", "upstream.stable-diffusion-xl"]


def test_accounts_come_from_the_list_or_the_single_key() -> None:
    [default] = Settings(upstream_api_key="sk-x").accounts()
    assert (default.name, default.submit_per_second, default.running_limit("wanx-v1")) == (
        "default",
        2.0,
        1,
    )
    assert default.running_limit("wanx2.1-t2i-turbo") == 2
    secret = "sk-" + "s3cret" * 4
    accounts = [{"name": "a", "api_key": secret, "max_running": 3, "models": ["qwen-image"]}]
    [account] = Settings(upstream_accounts=accounts).accounts()
    assert account.serves("qwen-image") and not account.serves("wanx-v1")
    with pytest.raises(SettingsError, match="unknown models"):
        Settings.from_env(upstream_accounts=[{**accounts[0], "models": ["nope"]}])
    assert secret not in repr(account) and secret not in describe(account)

"""``synthgate --version``, ``--help`` and each command's ``--help``: what it does and the
``SYNTHGATE_*`` settings it reads, listed from Settings' own fields."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from synthgate import command_help
from synthgate.cli import build_parser, main
from taskcore.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FIELDS = set(Settings.model_fields)


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_setting_named_exists_and_every_setting_is_in_a_group() -> None:
    for name, group in command_help.GROUPS.items():
        assert set(group.names) <= FIELDS, (name, set(group.names) - FIELDS)
        for prefix in group.prefixes:
            assert any(field.startswith(prefix) for field in FIELDS), (name, prefix)
    grouped = {field for group in command_help.GROUPS.values() for field in group.fields()}
    assert FIELDS - grouped == set(), "settings in no group of synthgate/command_help.py"
    for command, entries in command_help.COMMAND_SETTINGS.items():
        for entry in entries:
            assert entry in command_help.GROUPS or entry in FIELDS, (command, entry)


def test_every_command_has_its_help_and_settings() -> None:
    assert set(_commands()) == set(command_help.COMMANDS) == set(command_help.COMMAND_SETTINGS)


def _read_in(package: str) -> set[str]:
    """The settings fields that the code of ``package`` reads as ``settings.<field>``."""
    names: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        names.update(re.findall(r"settings\.([a-z_0-9]+)", path.read_text()))
    return names & FIELDS


@pytest.mark.parametrize(("command", "package"), [("serve", "gateway"), ("worker", "workers")])
def test_the_settings_a_commands_code_reads_are_listed(command: str, package: str) -> None:
    read = _read_in(package)
    assert read, package  # the scan finds something: it would not pass on an empty match
    assert read - set(command_help.command_settings(command)) == set()


def test_run_lists_what_serve_and_worker_read() -> None:
    both = set(command_help.command_settings("serve")) | set(
        command_help.command_settings("worker")
    )
    assert both <= set(command_help.command_settings("run"))


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"synthgate {version('synthgate')}"


def test_the_installed_command_prints_its_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "synthgate.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    assert re.fullmatch(r"synthgate \d+\.\d+\S*\n", done.stdout), done.stdout


def test_help_says_what_synthgate_is_and_lists_the_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(capsys)
    assert "text-to-image" in text and "DashScope" in text
    assert "``" not in text  # not a module docstring
    flat = " ".join(text.split())
    for name, about in command_help.COMMANDS.items():
        assert f"{name} {about.summary}" in flat, name


def test_worker_help_covers_both_kinds_of_pool_and_lists_its_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(capsys, "worker")
    assert "one Celery worker" not in text
    assert "upstream" in text and "GPU" in text and "/livez" in text
    for name in command_help.command_settings("worker"):
        assert f"SYNTHGATE_{name.upper()}" in text
    assert "SYNTHGATE_WORKER_METRICS_PORT" in text and "SYNTHGATE_UPSTREAM_MAX_INFLIGHT" in text
    assert "SYNTHGATE_OPENAI_DEFAULT_MODEL" not in text  # the gateway's


def test_serve_help_lists_the_gateways_settings_not_the_gpus(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help(capsys, "serve")
    assert "SYNTHGATE_PORT" in text and "SYNTHGATE_ADMIN_TOKEN" in text
    assert "SYNTHGATE_TORCH_COMPILE" not in text and "SYNTHGATE_WORKER_CONCURRENCY" not in text


def test_the_simulator_says_it_reads_no_settings(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "simulate-upstream")
    assert "settings: none" in text
    assert "SYNTHGATE_REDIS_URL" not in text

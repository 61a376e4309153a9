"""Documentation matches the code: every setting is in the README's table and in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import beacon.settings

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> set[str]:
    """Every variable Settings.from_env reads."""
    text = Path(beacon.settings.__file__).read_text()
    names = set(re.findall(r'\(env, "([A-Z][A-Z0-9_]+)"', text)) | set(re.findall(r'\("(ANALYSIS_[A-Z_]+)"', text))
    assert len(names) > 20, names
    return names


def readme_table_names() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))


def test_every_setting_is_in_the_readme_table():
    missing = setting_names() - readme_table_names()
    assert not missing, f"settings missing from the README table: {sorted(missing)}"


def cli_envvars() -> set[str]:
    """Variables the ``beacon`` command's options read (e.g. WORKER_REGIONS)."""
    import click

    from beacon.cli import main

    names: set[str] = set()
    commands = list(main.commands.values())
    while commands:
        command = commands.pop()
        if isinstance(command, click.Group):
            commands.extend(command.commands.values())
        names |= {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}
    return names


def test_readme_table_names_only_real_settings():
    extra = readme_table_names() - setting_names() - cli_envvars()
    assert not extra, f"README documents variables the code does not read: {sorted(extra)}"


def test_cli_envvars_are_in_the_readme_table():
    missing = cli_envvars() - readme_table_names()
    assert not missing, f"CLI variables missing from the README table: {sorted(missing)}"


def test_every_setting_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    missing = {name for name in setting_names() if not re.search(rf"^#?\s*{name}=", example, flags=re.MULTILINE)}
    assert not missing, f"settings missing from .env.example: {sorted(missing)}"


def test_readme_commands_exist():
    from click.testing import CliRunner

    from beacon.cli import main

    readme = (ROOT / "README.md").read_text()
    commands = set(re.findall(r"`beacon ([a-z][a-z-]*)", readme))
    assert commands, "the README names no beacon command"
    for command in sorted(commands):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0, f"beacon {command}: {result.output}"

"""The README's tables say what the code does: the configuration table names every `TW_`
setting the package reads, the command table every command the parser knows, and the
gunicorn paragraph every variable `gunicorn.conf.py` reads. A setting or command added
without its line in the README fails here."""

import argparse
import re

from processes import PROJECT_ROOT

from {{ cookiecutter.package_name }}.cli import build_parser

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
SOURCES = sorted((PROJECT_ROOT / "src").rglob("*.py"))


def section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.MULTILINE | re.DOTALL)
    assert found, f"the README has no '## {title}' section"
    return found.group(1)


def first_cells(text: str) -> list[str]:
    """The code in the first cell of each table row: `| `TW_X` / `TW_Y` | ...` -> both."""
    cells = re.findall(r"^\| (.*?) \|", text, re.MULTILINE)
    return [code for cell in cells for code in re.findall(r"`([^`]+)`", cell)]


def test_every_setting_the_package_reads_is_in_the_configuration_table():
    read = set()
    for path in SOURCES:
        read |= set(re.findall(r"[\"'](TW_[A-Z0-9_]+)[\"']", path.read_text(encoding="utf-8")))
    documented = set(first_cells(section("Configuration")))
    assert read - documented == set(), "settings the code reads but the README does not list"
    assert {name for name in documented if name.startswith("TW_")} - read == set(), (
        "settings the README lists but no code reads"
    )


def commands_of(parser: argparse.ArgumentParser) -> set[str]:
    """`cmd`, or `cmd action` for a command with actions, for every command the parser has."""
    names = set()
    for action in parser._subparsers._group_actions:  # argparse keeps no public list
        for name, sub in action.choices.items():
            nested = commands_of(sub) if sub._subparsers else set()
            names |= {f"{name} {inner}" for inner in nested} or {name}
    return names


def test_every_command_is_in_the_command_table():
    parser_commands = commands_of(build_parser())
    documented = set()
    for code in first_cells(section("Command line")):
        words = code.split()
        if not words or words[0].startswith("-"):
            continue
        two = " ".join(words[:2])
        documented.add(two if two in parser_commands else words[0])
    assert parser_commands - documented == set(), "commands the README's table does not list"
    assert documented - parser_commands == set(), "commands the README lists but the parser lacks"


def test_the_gunicorn_variables_listed_are_those_its_config_reads():
    config = (PROJECT_ROOT / "gunicorn.conf.py").read_text(encoding="utf-8")
    read = set(re.findall(r"os\.environ(?:\.get\(\s*|\[)[\"']([A-Z_]+)[\"']", config))
    paragraph = re.search(r"^gunicorn reads its own settings.*?(?=\n\n)", README, re.M | re.S)
    assert paragraph, "the README no longer says which variables gunicorn.conf.py reads"
    listed = set(re.findall(r"`([A-Z][A-Z_]+)`", paragraph.group(0)))
    assert read == listed

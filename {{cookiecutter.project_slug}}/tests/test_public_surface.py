"""What partners may import is written down once and holds: each `__all__` of `handlers`,
`ordering` and `testing` names what the module has, the README's "What is yours to import"
sentence names exactly those, and the README's fixture table names the plugin's fixtures.
A name dropped or renamed without the README (and so without telling partners) fails here."""

import ast
import importlib
import re

import pytest
from processes import PROJECT_ROOT

PACKAGE = "{{ cookiecutter.package_name }}"
PUBLIC = ("handlers", "ordering", "testing")
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def surface_sentence() -> str:
    found = re.search(r"What is yours to import:(.*?)\n\n", README, re.DOTALL)
    assert found, "the README has no 'What is yours to import' sentence"
    return " ".join(found.group(1).split())


def named_in_readme(module: str) -> set[str]:
    """The names the sentence gives in parentheses after `module`."""
    found = re.search(rf"`{module}` \((.*?)\)", surface_sentence())
    assert found, f"the sentence does not name `{module}`'s names"
    return set(re.findall(r"`([^`]+)`", found.group(1)))


@pytest.mark.parametrize("module", PUBLIC)
def test_every_public_name_exists(module):
    imported = importlib.import_module(f"{PACKAGE}.{module}")
    assert imported.__all__, f"{module} states no public names"
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert missing == [], f"{module}.__all__ names what it does not have"


@pytest.mark.parametrize("module", PUBLIC)
def test_the_readme_names_exactly_the_public_names(module):
    assert named_in_readme(module) == set(importlib.import_module(f"{PACKAGE}.{module}").__all__)


def plugin_fixtures() -> set[str]:
    """The public fixtures `testing.py` defines, by the names tests ask for them."""
    tree = ast.parse((PROJECT_ROOT / "src" / PACKAGE / "testing.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if ast.unparse(target) != "pytest.fixture":
                continue
            keywords = decorator.keywords if isinstance(decorator, ast.Call) else []
            given = [k.value.value for k in keywords if k.arg == "name"]
            names.add(given[0] if given else node.name)
    return {name for name in names if not name.startswith("_")}


def test_the_readme_fixture_table_names_every_public_fixture():
    table = re.search(r"^\| fixture \| what it is \|\n(.*?)\n\n", README, re.MULTILINE | re.DOTALL)
    assert table, "the README has no fixture table"
    first_cells = re.findall(r"^\| (.*?) \|", table.group(1), re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`(\w+)", cell)}
    # The session-wide server behind `redis_url` is the plugin's own plumbing.
    assert plugin_fixtures() - {"redis_server_url"} == documented

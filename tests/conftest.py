"""Fixtures for the template's tests; pytest-cookies provides ``cookies``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TEMPLATE_DIR


@pytest.fixture(scope="session")
def template_dir() -> Path:
    """The template's root (the directory holding ``cookiecutter.json``)."""
    return TEMPLATE_DIR

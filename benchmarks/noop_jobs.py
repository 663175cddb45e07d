"""The job of the plain-RQ baseline: a function that does nothing."""


def noop() -> None:
    return None

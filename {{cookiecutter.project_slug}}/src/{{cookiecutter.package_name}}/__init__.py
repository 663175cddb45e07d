"""Receive, verify and process Tickets Wholesale API webhooks (see the README)."""

__version__ = "0.1.0"

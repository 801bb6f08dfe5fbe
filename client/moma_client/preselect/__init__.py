"""Local pre-selection: rank every compatible hub module from public fingerprints and the
owner's own data, on the owner's machine, so that only the top few are downloaded for AMC."""

DEFAULT_TOP_K = 50
"""Modules downloaded by default (the issue's budget: 50 or fewer)."""

"""Shared plumbing for every kubetensor process: paths, errors and helpers that no service owns."""

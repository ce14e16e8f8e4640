"""The launch path: placeholder, owned by the foundation work."""

from __future__ import annotations

from typing import List

from hpcrun.errors import UsageError


def run(args: List[str]) -> int:
    """Parse the launch command line, build the plan, render and exec it."""
    raise UsageError("launch is not implemented yet")

"""Shared pieces of the subcommands that take ``--site``: resolving the site and runtime."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Mapping, Tuple

from hpcrun.host.facts import RuntimeInfo
from hpcrun.plan.model import ERROR, Diagnostic
from hpcrun.profiles.model import Profile


def site_and_profile(site: str, environ: Mapping[str, str]) -> Tuple[str, Profile]:
    """The ``HPCRUN_SITE`` value to publish and the loaded profile.

    A name stays a name; a path becomes absolute so that the variable works from any
    directory.
    """
    from hpcrun.profiles.lookup import default_site, load_site

    chosen = site or default_site(environ)
    profile = load_site(chosen, environ)
    if chosen.endswith(".toml") or "/" in chosen:
        chosen = os.path.abspath(chosen)
    return chosen, profile


def runtime_for(profile: Profile, requested: str, environ: Mapping[str, str]) -> RuntimeInfo:
    """The runtime the snippet targets: ``--runtime``, the profile's, else what is installed."""
    from hpcrun.launch.runtime import detect_runtime

    return detect_runtime(requested, profile.runtime.kind, profile.runtime.path, environ)


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> int:
    """Print warnings and errors to stderr, one line each, findings of the same code and
    hint folded into one line with a count; return the number of errors."""
    from hpcrun.render.text import fold

    shown = [d for d in diagnostics if d.severity != "info"]
    for diag, parts in fold(shown):
        hint = f" ({diag.hint})" if diag.hint else ""
        if parts:
            message = f"{diag.message} (x{len(parts)}: {', '.join(parts)})" if diag.message \
                else "; ".join(parts)
        else:
            message = diag.message
        sys.stderr.write(f"hpcrun: {diag.severity}: {message}{hint}\n")
    return sum(1 for d in shown if d.severity == ERROR)

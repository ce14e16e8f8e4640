"""``hpcrun module``: write an Lmod modulefile for a site."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from hpcrun.errors import ConfigError, UsageError


def module_command(
    site: str = typer.Option("", "--site", "-s", help="Site name or profile path "
                             "(default: $HPCRUN_SITE)."),
    name: str = typer.Option("", "--name", help="Module name (default: hpcrun/SITE)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Module tree to write "
                                          "into (DIR/NAME.lua); default: print to stdout."),
    runtime: str = typer.Option("", "--runtime", help="apptainer or singularity."),
    conflict: List[str] = typer.Option([], "--conflict", help="Module that cannot be loaded "
                                       "together with this one (repeatable)."),
    wrappers: bool = typer.Option(False, "--wrappers", help="Add the shell function "
                                  "`hpcrun-exec` (hpcrun --site SITE ...)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing modulefile."),
) -> int:
    """Write an Lmod modulefile (Lua) that sets HPCRUN_SITE and the site's bind-model
    variables with pushenv, so `module unload` restores the previous environment exactly."""
    from hpcrun.cli.siteopts import print_diagnostics, runtime_for, site_and_profile
    from hpcrun.plan.hostpaths import survey_host_paths
    from hpcrun.render.lmod import modulefile
    from hpcrun.render.siteenv import site_environment

    environ = dict(os.environ)
    site_value, profile = site_and_profile(site, environ)
    module_name = name or f"hpcrun/{profile.name}"
    parts = module_name.split("/")
    if any(p in ("", ".", "..") for p in parts) or any(c in module_name for c in "\n\x00"):
        raise UsageError(f"invalid module name {module_name!r}", "use NAME or NAME/VERSION")
    info = runtime_for(profile, runtime, environ)
    assignments, diagnostics = site_environment(profile, site_value, info,
                                                survey_host_paths(profile))
    if print_diagnostics(diagnostics):
        raise ConfigError(f"site {profile.name}: the profile cannot be expressed as a module",
                          f"fix the errors above; check with `hpcrun site validate {site_value}`")
    text = modulefile(site_value, profile.description, assignments, info.kind, conflict, wrappers)
    data = os.fsencode(text)
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    target = output.joinpath(*parts[:-1], parts[-1] + ".lua")
    if target.exists() and not force:
        raise UsageError(f"{target} exists", "pass --force to overwrite it")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror}",
                         "choose a writable directory with -o") from None
    sys.stderr.write(f"hpcrun: wrote {target} (module use {output}; module load {module_name})\n")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``hpcrun module`` to the app."""
    app.command("module")(module_command)

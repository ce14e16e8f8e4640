"""``hpcrun env``: print what makes a plain ``apptainer exec`` use the site's host MPI."""

from __future__ import annotations

import os
import sys

import typer

from hpcrun.errors import ConfigError
from hpcrun.render.snippets import SHELLS


def env_command(
    site: str = typer.Option("", "--site", "-s", help="Site name or profile path "
                             "(default: $HPCRUN_SITE)."),
    shell: str = typer.Option("bash", "--shell", help="Syntax: " + ", ".join(SHELLS) + "."),
    runtime: str = typer.Option("", "--runtime", help="apptainer or singularity "
                                "(default: the profile's, else what is installed)."),
) -> int:
    """Print shell statements that set the site's bind path, container variables and
    HPCRUN_SITE.  bash/zsh/sh: eval "$(hpcrun env)"; csh/tcsh: hpcrun env --shell tcsh > f;
    source f; fish: hpcrun env --shell fish | source."""
    from hpcrun.cli.siteopts import print_diagnostics, runtime_for, site_and_profile
    from hpcrun.plan.hostpaths import survey_host_paths
    from hpcrun.render.siteenv import site_environment
    from hpcrun.render.snippets import render

    environ = dict(os.environ)
    name, profile = site_and_profile(site, environ)
    info = runtime_for(profile, runtime, environ)
    assignments, diagnostics = site_environment(profile, name, info, survey_host_paths(profile))
    if print_diagnostics(diagnostics):
        raise ConfigError(f"site {name}: the profile cannot be expressed as an environment",
                          f"fix the errors above; check with `hpcrun site validate {name}`")
    sys.stdout.buffer.write(os.fsencode(render(shell, assignments)))
    sys.stdout.flush()
    return 0


def register(app: typer.Typer) -> None:
    """Add ``hpcrun env`` to the app."""
    app.command("env")(env_command)

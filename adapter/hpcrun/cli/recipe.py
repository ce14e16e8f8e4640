"""``hpcrun recipe``: write an Apptainer definition file for an image the site's host MPI
can serve (the work is :func:`hpcrun.render.recipe.render_recipe`; this is the shell:
read the profile and the user's file, gather the resolver's facts, write the text)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from hpcrun.errors import OutputError, UsageError


def read_user_recipe(path: Path) -> object:
    """The user's Dockerfile or definition file as a UserRecipe (by content, not name:
    a definition file has a ``Bootstrap:`` header line)."""
    from hpcrun.render.userrecipe import parse_definition, parse_dockerfile

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--from {path}: no such file",
                         "give the Dockerfile or Apptainer definition file to start from"
                         ) from None
    except OSError as error:
        raise UsageError(f"--from {path}: cannot read it: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text",
                         "--from takes a Dockerfile or an Apptainer definition file") from None
    words = [line.split(":", 1)[0].strip().lower() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if words and words[0] == "bootstrap":
        return parse_definition(text, str(path))
    return parse_dockerfile(text, str(path))


def recipe_command(
    site: str = typer.Option("", "--site", "-s", help="Site name or profile path "
                             "(default: $HPCRUN_SITE)."),
    source: Optional[Path] = typer.Option(None, "--from", help="Your Dockerfile or Apptainer "
                                          "definition file: its steps are kept, the MPI layer "
                                          "is added."),
    base: str = typer.Option("", "--base", help="Base image (debian:bookworm, ubuntu:22.04, "
                             "...); default: FROM of --from, else the first that suits."),
    bootstrap: str = typer.Option("docker", "--bootstrap", help="docker (pull the base) or "
                                  "debootstrap (build it from the distribution's archive)."),
    abi: str = typer.Option("", "--abi", help="mpi5: build for the MPI-5 standard ABI "
                            "(libmpi_abi.so.1) when the host ships it."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="File to write "
                                          "(default: stdout)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> int:
    """Write an Apptainer definition file for an image the site's host MPI can serve:
    an MPI of the family it serves, in a version its ABI policy accepts, on a base whose
    glibc its libraries can use, mpi4py built against it, the bind directories."""
    from hpcrun import __version__
    from hpcrun.cli.siteopts import site_and_profile
    from hpcrun.render.recipe import RecipeOptions, render_recipe
    from hpcrun.resolve.requirements import host_requirements

    environ = dict(os.environ)
    _site_value, profile = site_and_profile(site, environ)
    user = read_user_recipe(source) if source is not None else None
    requirements = host_requirements(profile, architecture=os.uname().machine)
    options = RecipeOptions(base=base, bootstrap=bootstrap, abi=abi, version=__version__)
    text = render_recipe(requirements, options, user)  # type: ignore[arg-type]
    if output is None:
        sys.stdout.write(text)
        return 0
    if output.exists() and not force:
        raise UsageError(f"{output} exists", "pass --force to overwrite it")
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {output}: {error.strerror}",
                          "choose a writable path with -o") from None
    sys.stderr.write(f"hpcrun: wrote {output} (build: apptainer build --fakeroot app.sif "
                     f"{output})\n")
    return 0


def register(app: typer.Typer) -> None:
    """Add ``hpcrun recipe`` to the app."""
    app.command("recipe")(recipe_command)

"""``hpcrun job validate|schema``: check a project's job file offline, print its schema.

The job file format and its layering are :mod:`hpcrun.profiles.job`; the launch path
(:mod:`hpcrun.cli.run`) applies it.
"""

from __future__ import annotations

import os
import sys
from typing import List, Optional

import typer

from hpcrun.errors import ConfigError

job_app = typer.Typer(help="Per-project job files (hpcrun.toml).", no_args_is_help=True,
                      add_completion=False)


@job_app.command("validate")
def validate_command(
    file: Optional[str] = typer.Argument(None, help="The job file (default: ./hpcrun.toml)."),
) -> int:
    """Check a job file offline: format (file:line: key on error), the site profile it
    names, the image it names; nothing is launched or inspected."""
    from hpcrun.profiles.job import JOB_FILE, job_image, load_job
    from hpcrun.profiles.lookup import load_site

    path = file or os.path.join(os.getcwd(), JOB_FILE)
    job = load_job(path)
    problems: List[str] = []
    environ = dict(os.environ)
    site = job.site or environ.get("HPCRUN_SITE", "")
    if site:
        try:
            profile = load_site(site, environ)
        except ConfigError as error:
            if not job.site:
                raise
            from hpcrun.profiles.job import build_error

            text = open(path, encoding="utf-8").read()
            raise build_error(path, text, "site", error.message, error.hint) from None
        site_text = f"site {profile.name} ({profile.source})"
    else:
        site_text = "no site (give --site or set HPCRUN_SITE at launch)"
    image = job_image(job)
    if image and "://" not in image and not os.path.exists(image):
        problems.append(f"image {image} does not exist (yet)")
    sys.stdout.write(f"{path}: valid job file; {site_text}; image {image or '(none)'}; "
                     f"{len(job.binds)} bind(s), {len(job.env)} variable(s), "
                     f"{len(job.launchers)} launcher default(s)\n")
    for problem in problems:
        sys.stderr.write(f"hpcrun: warning: {path}: {problem}\n")
    return 0


@job_app.command("schema")
def schema_command() -> int:
    """Print the job file's JSON Schema (also installed as hpcrun/data/job-schema.json)."""
    from hpcrun.profiles.schema import job_schema_text

    sys.stdout.write(job_schema_text())
    return 0


def register(app: typer.Typer) -> None:
    """Add ``hpcrun job`` to the app."""
    app.add_typer(job_app, name="job")

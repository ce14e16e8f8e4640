"""`hpcrun site`: list, show, validate and detect site profiles."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from hpcrun.errors import ConfigError, UsageError

site_app = typer.Typer(help="Site profiles: list, show, validate, detect.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the `site` command group to the app."""
    app.add_typer(site_app, name="site")


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


@site_app.command("list")
def list_command() -> None:
    """List the site profiles on the search path ($HPCRUN_SITE_PATH, ~/.config/hpcrun/sites,
    /etc/hpcrun/sites, bundled)."""
    from hpcrun.profiles.lookup import SITE_VAR, list_sites, search_dirs
    from hpcrun.render.text import wrap, wrap_width

    columns = wrap_width()
    entries = list_sites(os.environ)
    default = os.environ.get(SITE_VAR, "")
    lines = ["hpcrun site profiles (the first of a name wins; the others are shadowed)"]
    for entry in entries:
        name = entry.name + (" (default)" if entry.name == default and not entry.shadowed else "")
        description = ("shadowed: " if entry.shadowed else "") + entry.description
        lines.extend(wrap(f"{name}: {description}", columns, "  ", "      "))
        lines.extend(wrap(str(entry.path), columns, "      "))
    looked = ", ".join(str(d) for d, _ in search_dirs(os.environ))
    lines.extend(wrap(f"search path: {looked}", columns, "", "  "))
    sys.stdout.write("\n".join(lines) + "\n")


@site_app.command("show")
def show_command(
    site: str = typer.Argument(..., help="Site name or path of a .toml profile."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON."),
) -> None:
    """Print a site profile as TOML: what differs from the defaults, as a sysadmin writes it.

    The output loads back as the same profile (hpcrun site validate reads it).
    """
    from hpcrun.profiles.load import profile_to_dict
    from hpcrun.profiles.lookup import load_site
    from hpcrun.profiles.write import dump_profile

    profile = load_site(site, os.environ)
    if as_json:
        sys.stdout.write(json.dumps(profile_to_dict(profile), indent=2) + "\n")
        return
    sys.stdout.write(dump_profile(profile, header=[f"site {profile.name}, from {profile.source}"],
                                  reference=False))


def _finding_line(severity: str, key: str, message: str, hint: str) -> str:
    line = f"{severity.upper()} {key or 'profile'}: {message}"
    return f"{line} ({hint})" if hint else line


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def findings_table(findings: List[Any], title: str) -> Any:
    """A rich table of findings (severity, key, message, hint) for people at a terminal."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", show_lines=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("key", style="cyan", overflow="fold")
    table.add_column("message", overflow="fold", ratio=3)
    table.add_column("hint", overflow="fold", ratio=2)
    for finding in findings:
        style = SEVERITY_STYLE.get(finding.severity, "")
        table.add_row(f"[{style}]{finding.severity.upper()}[/{style}]" if style
                      else finding.severity.upper(),
                      escape(finding.source or "profile"), escape(finding.message),
                      escape(finding.hint))
    return table


@site_app.command("validate")
def validate_command(
    site: str = typer.Argument(..., help="Site name or path of a .toml profile."),
    deep: bool = typer.Option(False, "--deep", help="Also open the library files: ELF of this "
                              "host's architecture, every DT_NEEDED found, the MPI family and "
                              "version as claimed, run-time providers present and visible."),
    plain: bool = typer.Option(False, "--plain", help="One line per finding even at a "
                               "terminal (the format when the output is not a terminal)."),
    offline: bool = typer.Option(False, "--offline", help="Check the file alone: TOML syntax, "
                                 "schema (keys, types, choices) and values, without looking "
                                 "at this host (for a laptop or a site's CI)."),
) -> int:
    """Check a profile on this host: one line per finding (a table with --deep at a
    terminal); exit 0 without errors, else 78 (a configuration error).  With --offline,
    check the file alone."""
    from hpcrun.cli.main import EXIT_CONFIG
    from hpcrun.profiles.load import ProfileError, load_profile
    from hpcrun.profiles.lookup import find_profile
    from hpcrun.profiles.validate import deep_checks, validate_profile

    if offline and deep:
        raise UsageError("--offline and --deep exclude each other: --deep opens host files",
                         "use one of them")
    path = find_profile(site, os.environ)
    try:
        profile = load_profile(path)
    except ProfileError as error:
        # The message already names file:line and the key path.
        hint = f" ({error.hint})" if error.hint else ""
        sys.stdout.write(f"ERROR {error.message}{hint}\n")
        return EXIT_CONFIG
    findings = validate_profile(profile, None if offline else Path("/"))
    if deep:
        findings += deep_checks(profile)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    summary = f"{path}: {errors} error(s), {warnings} warning(s)" + (
        " (offline: syntax, schema and values; no host file looked at)" if offline else "")
    if deep and not plain and sys.stdout.isatty():
        from rich.markup import escape

        console = _console()
        if findings:
            console.print(findings_table(findings, f"hpcrun site validate --deep {site}"))
        console.print(escape(summary))
        return EXIT_CONFIG if errors else 0
    for finding in findings:
        sys.stdout.write(_finding_line(finding.severity, finding.source, finding.message,
                                       finding.hint) + "\n")
    sys.stdout.write(summary + "\n")
    return EXIT_CONFIG if errors else 0


@site_app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of site profiles (for editors: save it beside the profiles)."""
    from hpcrun.profiles.schema import schema_text

    sys.stdout.write(schema_text())


@site_app.command("detect")
def detect_command(
    name: Optional[str] = typer.Option(None, "--name", help="Site name (default: the Slurm "
                                       "ClusterName)."),
    mpi: str = typer.Option("auto", "--mpi", help="MPI library file, its directory or the MPI "
                            "prefix; auto searches the environment and ld.so.cache."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Write the profile to this file (default: standard output)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Probe this host and write a commented site profile; review its GUESS lines."""
    from hpcrun.profiles.detect import detect_site, render_detection

    if output is not None and output.exists() and not force:
        raise UsageError(f"{output} exists", "give --force to overwrite it, or another -o FILE")
    if name is not None and not name.strip():
        raise UsageError("--name is empty")
    text = render_detection(detect_site(Path("/"), os.environ, mpi=mpi, name=name or ""))
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot write {output}: {error.strerror}",
                          "choose a writable location") from None
    sys.stderr.write(f"wrote {output}; review the GUESS comments, then run "
                     f"`hpcrun site validate {output}`\n")


__all__: List[str] = ["register"]

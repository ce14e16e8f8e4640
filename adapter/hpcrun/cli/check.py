"""`hpcrun check`: can this site's host MPI serve this image (and app)? Exit 0/67/68.

``hpcrun check [--site S] IMAGE [--app "CMD ARGS"] [APP ARGV...] [--json] [--abi-policy P]
[--explain]`` inspects the image (no container is started), resolves the host library
closure and prints the verdict: 0 compatible, 67 compatible with warnings, 68 incompatible
(the codes of ``hpcrun.cli.main.EXIT_CODES``).
"""

from __future__ import annotations

import os
import shlex
import sys

from hpcrun.cli.main import EXIT_INCOMPATIBLE, EXIT_OK, EXIT_WARNINGS
from hpcrun.plan.model import (
    COMPATIBLE,
    COMPATIBLE_WITH_WARNINGS,
    INCOMPATIBLE,
    Contribution,
    Request,
)

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

    import typer

EXIT_CODES = {COMPATIBLE: EXIT_OK, COMPATIBLE_WITH_WARNINGS: EXIT_WARNINGS,
              INCOMPATIBLE: EXIT_INCOMPATIBLE}
_FLAGS = ("--json", "--explain")
_VALUED = ("--site", "--app", "--abi-policy")


def register(app: typer.Typer) -> None:
    """Add the `check` command to the app."""
    import typer

    def check(
        image: str = typer.Argument(..., help="Image: .sif, squashfs, ext3 or sandbox "
                                    "directory."),
        command: list[str] = typer.Argument(  # builtins only: typer evaluates these
            None, help="The application command to check (after the image, or use --app)."),
        site: str = typer.Option("", "--site", help="Site profile name or file (default "
                                 "$HPCRUN_SITE)."),
        app: str = typer.Option("", "--app", help="Application command line, e.g. \"python3 "
                                "-m mpi4py.bench helloworld\"."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        abi_policy: str = typer.Option("", "--abi-policy", help="Version rule: major, full, "
                                       "strict (default: the profile's mpi.abi_policy)."),
        explain: bool = typer.Option(False, "--explain", help="Also list every host file "
                                     "bound, with the chain of libraries that needed it."),
    ) -> int:
        """Check that the site's host MPI can serve IMAGE (and its application): 0
        compatible, 67 warnings, 68 incompatible."""
        return check_command(image, command, site, app, as_json, abi_policy, explain)

    app.command("check")(check)


def run_direct(args: List[str]) -> Optional[int]:
    """Run ``hpcrun check ARGS`` without typer when ARGS take the usual form; else None.

    Parsed as typer (click) parses them: options (``--json``, ``--explain``, ``--site S``,
    ``--app S``, ``--abi-policy P``, also ``--opt=value``) anywhere before a ``--``, the
    first other word the image, the rest the application command; a repeated option: the
    last one wins.  Anything else (``--help``, an unknown option, a value that looks like an
    option, no image) returns None, so that typer answers it.
    """
    values: Dict[str, str] = {}
    flags = set()
    words: List[str] = []
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word == "--":
            words += rest
            break
        if not word.startswith("-") or word == "-":
            words.append(word)
            continue
        name, eq, value = word.partition("=")
        if word in _FLAGS:
            flags.add(word)
        elif name in _VALUED and eq:
            values[name] = value
        elif word in _VALUED and rest and not rest[0].startswith("-"):
            values[word] = rest.pop(0)
        else:
            return None
    if not words:
        return None
    return check_command(words[0], words[1:], values.get("--site", ""),
                         values.get("--app", ""), "--json" in flags,
                         values.get("--abi-policy", ""), "--explain" in flags)


def check_command(image: str, command: Optional[List[str]], site: str, app: str,
                  as_json: bool, abi_policy: str, explain: bool) -> int:
    """Inspect, resolve and report; the exit code (0 compatible, 67 warnings, 68 not)."""
    from hpcrun.host.probe import probe_host
    from hpcrun.image.inspect import inspect_image
    from hpcrun.profiles.lookup import default_site, load_site
    from hpcrun.resolve.resolver import resolve

    # `--app "python3 x.py"`, `--app python3 x.py` and `IMAGE python3 x.py` all mean the same.
    argv = [*(shlex.split(app) if app else []), *(command or [])]
    profile = load_site(site or default_site(os.environ), os.environ)
    facts = inspect_image(image, app=argv or None)
    host = probe_host()
    request = Request(launcher=(), image=image, command=tuple(argv), site=profile.name,
                      abi_policy=abi_policy)
    result = resolve(profile, request, host, facts)
    if as_json:
        import json

        sys.stdout.write(json.dumps(to_json(result, profile.name, image, argv), indent=2) + "\n")
    else:
        _print(result, profile.name, image, argv, explain)
    return EXIT_CODES.get(result.verdict, EXIT_INCOMPATIBLE)


def to_json(result: Contribution, site: str, image: str, argv: List[str]) -> Dict[str, Any]:
    """The check result as a JSON-ready dict (stable keys)."""
    return {
        "site": site,
        "image": image,
        "app": argv,
        "verdict": result.verdict,
        "exit_code": EXIT_CODES.get(result.verdict, EXIT_INCOMPATIBLE),
        "diagnostics": [
            {"severity": d.severity, "code": d.code, "message": d.message, "hint": d.hint,
             "source": d.source} for d in result.diagnostics],
        "binds": [
            {"source": b.source, "destination": b.destination, "kind": b.kind,
             "reason": b.reason} for b in result.binds],
        "library_path": list(result.library_path),
        "preload": list(result.preload),
        "env": [{"name": e.name, "value": e.value, "reason": e.reason} for e in result.env],
    }


_VERDICT = {COMPATIBLE: "compatible", COMPATIBLE_WITH_WARNINGS: "compatible, with warnings",
            INCOMPATIBLE: "incompatible"}


def _print(result: Contribution, site: str, image: str, argv: List[str], explain: bool) -> None:
    """The verdict and its findings as plain text (folded by code, wrapped at the terminal's
    width, 80 columns when piped); with ``explain`` every host file bound."""
    from hpcrun.render.text import findings, wrap, wrap_width

    columns = wrap_width()
    subject = image + (f" {' '.join(argv)}" if argv else "")
    verdict = _VERDICT.get(result.verdict, result.verdict)
    lines = wrap(f"site {site}, image {subject}: {verdict}", columns, "", "  ")
    if result.diagnostics:
        lines.append(f"findings: {len(result.diagnostics)}")
        lines.extend(findings(result.diagnostics, columns))
    for env in result.env:
        lines.extend(wrap(f"set {env.name}={env.value}: {env.reason}", columns, "", "  "))
    if explain:
        lines.append(f"host files bound: {len(result.binds)}")
        for b in result.binds:
            lines.extend(wrap(f"{b.destination} <- {b.source}", columns, "  ", "    "))
            lines.extend(wrap(f"{b.kind}: {b.reason}", columns, "    why ", "        "))
        if result.library_path:
            lines.extend(wrap("LD_LIBRARY_PATH starts with " + ":".join(result.library_path),
                              columns))
        if result.preload:
            lines.extend(wrap("LD_PRELOAD " + ":".join(result.preload), columns))
    sys.stdout.write("\n".join(lines) + "\n")

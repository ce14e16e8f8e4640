"""The user's own build steps, read from a Dockerfile (through spython) or an Apptainer
definition file, for ``hpcrun recipe --from FILE``.

Both become one :class:`UserRecipe`: the base image it starts from and its sections in
Apptainer's terms (``files``, ``post``, ``environment``, ``runscript`` ...).  A Dockerfile
is converted by spython's ``DockerParser`` and ``SingularityWriter`` (the conversion
Singularity's own tooling uses); hpcrun adds nothing of its own there and only checks what
spython silently accepts: a Dockerfile must start with ``FROM`` (after ``ARG`` and comments),
every instruction must be a Dockerfile instruction, and one stage only (a multi-stage
build's earlier stages have no place in one definition file).  Every problem is one
:class:`~hpcrun.errors.UsageError` naming the file and line.  Pure: text in, record out.
"""

from __future__ import annotations

import contextlib
import io
import re

from hpcrun.errors import UsageError
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Tuple

DOCKER_INSTRUCTIONS = frozenset((
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"))

# Apptainer's section names (a definition file's ``%name`` lines).
SECTIONS = ("arguments", "setup", "files", "post", "environment", "runscript", "startscript",
            "test", "labels", "help", "app")


@record
class UserRecipe:
    """The user's recipe: where it came from, its base, its header and sections in order.

    ``base`` is the docker reference (``debian:bookworm``) or, for a definition file that
    does not bootstrap from docker, ``BOOTSTRAP:VALUE`` (``debootstrap:bookworm``).
    ``sections`` holds (name, body) pairs, bodies without the ``%name`` line.
    """

    source: str
    kind: str  # dockerfile | definition
    base: str
    header: Tuple[Tuple[str, str], ...] = ()
    sections: Tuple[Tuple[str, str], ...] = ()
    notes: Tuple[str, ...] = ()

    def section(self, name: str) -> str:
        """The body of one section ("" when absent)."""
        return "\n".join(body for key, body in self.sections if key == name)


def _instructions(text: str) -> List[Tuple[int, str]]:
    """(line number, instruction word) of each Dockerfile instruction (continuations and
    comments skipped)."""
    out: List[Tuple[int, str]] = []
    continued = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not continued):
            continue
        if not continued:
            out.append((number, stripped.split(None, 1)[0].upper()))
        continued = stripped.endswith("\\")
    return out


def parse_dockerfile(text: str, source: str) -> UserRecipe:
    """A Dockerfile's steps as an Apptainer definition's sections (spython's conversion)."""
    found = _instructions(text)
    if not found:
        raise UsageError(f"{source}: no Dockerfile instructions (empty file)",
                         "a Dockerfile starts with FROM IMAGE")
    for number, word in found:
        if word not in DOCKER_INSTRUCTIONS:
            raise UsageError(f"{source}:{number}: {word!r} is not a Dockerfile instruction",
                             "spython cannot convert this file; instructions are "
                             "FROM, RUN, COPY, ENV, ... (continued lines end with \\)")
    first = next(((n, w) for n, w in found if w != "ARG"), found[0])
    if first[1] != "FROM":
        raise UsageError(f"{source}:{first[0]}: the first instruction is {first[1]}, not FROM",
                         "a Dockerfile starts with FROM IMAGE (after ARG lines)")
    stages = [n for n, w in found if w == "FROM"]
    if len(stages) > 1:
        raise UsageError(f"{source}:{stages[1]}: a second FROM (multi-stage build)",
                         "hpcrun recipe converts one stage: keep the stage that runs the "
                         "application, or write the definition file by hand")
    recipe, notes = _spython(text, source)
    converted = _converted(recipe, source)
    header, sections = split_definition(converted, source)
    base = dict(header).get("From", "")
    if not base:
        raise UsageError(f"{source}: spython found no base image in FROM",
                         "write FROM IMAGE:TAG")
    header = tuple((k, v) for k, v in header if k not in ("Bootstrap", "From", "Stage"))
    # Apptainer labels are "KEY VALUE"; spython keeps Docker's KEY=VALUE
    sections = tuple((name, "\n".join(_label(line) for line in body.splitlines()))
                     if name == "labels" else (name, body) for name, body in sections)
    return UserRecipe(source=source, kind="dockerfile", base=base, header=header,
                      sections=sections, notes=notes)


@contextlib.contextmanager
def _quiet(log: io.StringIO) -> Iterator[None]:
    """spython's logger writes to the streams it saw at import: point them at ``log``."""
    from spython.logger import bot

    saved = bot.errorStream, bot.outputStream
    bot.errorStream = bot.outputStream = log
    try:
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            yield
    finally:
        bot.errorStream, bot.outputStream = saved


def _spython(text: str, source: str) -> Tuple[Any, Tuple[str, ...]]:
    """Run spython's DockerParser on ``text``; its log lines are returned, not printed."""
    from spython.main.parse.parsers import DockerParser

    log = io.StringIO()
    try:
        with _quiet(log):
            parser = DockerParser(filename=None, load=False)
            parser.filename = source
            parser.lines = [line + "\n" for line in text.splitlines()]
            recipe = parser.parse()
    except (SystemExit, Exception) as error:  # spython reports by exiting or raising
        detail = _last_line(log.getvalue()) or type(error).__name__
        raise UsageError(f"{source}: spython cannot parse this Dockerfile: {detail}",
                         "check the instruction syntax (docker build would reject it too)"
                         ) from None
    notes = tuple(_clean(line) for line in log.getvalue().splitlines()
                  if "WARNING" in line)
    return recipe, notes


def _converted(recipe: Dict[str, Any], source: str) -> str:
    from spython.main.parse.writers import SingularityWriter

    log = io.StringIO()
    try:
        with _quiet(log):
            return str(SingularityWriter(recipe).convert())
    except (SystemExit, Exception) as error:
        detail = _last_line(log.getvalue()) or type(error).__name__
        raise UsageError(f"{source}: spython cannot convert this Dockerfile: {detail}",
                         "a Dockerfile starts with FROM IMAGE") from None


def _label(line: str) -> str:
    key, sep, value = line.strip().partition("=")
    if not sep or " " in key:
        return line
    return f"    {key} {value.strip().strip(chr(34))}"


def _clean(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", line).replace("WARNING", "").strip(" :")


def _last_line(text: str) -> str:
    lines = [_clean(x) for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else ""


def split_definition(text: str, source: str
                     ) -> Tuple[Tuple[Tuple[str, str], ...], Tuple[Tuple[str, str], ...]]:
    """An Apptainer definition's header (``Key: value`` lines) and sections, in order."""
    header: List[Tuple[str, str]] = []
    sections: List[Tuple[str, List[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("%"):
            name = stripped[1:].split(None, 1)[0] if len(stripped) > 1 else ""
            if name not in SECTIONS:
                raise UsageError(f"{source}:{number}: unknown section %{name}",
                                 "sections are %" + ", %".join(SECTIONS))
            sections.append((stripped[1:], []))
            continue
        if sections:
            sections[-1][1].append(line)
            continue
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition(":")
        if not sep or not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", key.strip()):
            raise UsageError(f"{source}:{number}: expected 'Key: value' in the header, "
                             f"got {stripped[:60]!r}",
                             "a definition file starts with 'Bootstrap: docker' and "
                             "'From: IMAGE'")
        header.append((key.strip(), value.strip()))
    return tuple(header), tuple((name, "\n".join(body).strip("\n")) for name, body in sections)


def parse_definition(text: str, source: str) -> UserRecipe:
    """An Apptainer/Singularity definition file's header and sections."""
    header, sections = split_definition(text, source)
    keys = {k.lower(): v for k, v in header}
    bootstrap = keys.get("bootstrap", "")
    if not bootstrap:
        raise UsageError(f"{source}: no 'Bootstrap:' line in the header",
                         "a definition file starts with 'Bootstrap: docker' and 'From: IMAGE'")
    if bootstrap == "docker":
        base = keys.get("from", "")
    elif bootstrap == "debootstrap":
        base = "debootstrap:" + keys.get("osversion", "")
    else:
        base = f"{bootstrap}:{keys.get('from', '')}"
    rest = tuple((k, v) for k, v in header
                 if k.lower() not in ("bootstrap", "from", "osversion", "mirrorurl", "stage"))
    return UserRecipe(source=source, kind="definition", base=base, header=rest,
                      sections=sections)

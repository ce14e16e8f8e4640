"""A program missing from the image: a warning while something may still provide it at run
time, an error (the launch refused) when nothing can."""

from __future__ import annotations

from typing import Dict, Tuple

import pytest

from hpcrun.image.facts import AppFacts, ImageFacts
from hpcrun.plan.appcheck import certain_missing_app, user_bind_destinations
from hpcrun.plan.model import Bind


def _image(command: Tuple[str, ...], kind: str = "missing") -> ImageFacts:
    return ImageFacts(source="/img/app.sif", kind="sif", app=AppFacts(command=command, kind=kind))


ENV: Dict[str, str] = {"HOME": "/home/u", "PWD": "/home/u/run"}


def test_absolute_path_nothing_provides_is_an_error() -> None:
    found = certain_missing_app(("/usr/local/bin/nope",), _image(("/usr/local/bin/nope",)),
                                (), ENV)
    assert found is not None and found.severity == "error" and found.code == "app-missing"
    assert found.message.startswith("/usr/local/bin/nope is not in the image /img/app.sif")


@pytest.mark.parametrize("program, binds, env", [
    ("nope", (), ENV),  # looked up on the container's PATH: cannot be sure
    ("/home/u/bin/app", (), ENV),  # home is mounted by the runtime
    ("/tmp/app", (), ENV),
    ("/opt/tool/bin/app", (Bind("/sw/tool", "/opt/tool"),), ENV),  # a bind of the plan
    ("/opt/tool/bin/app", (), dict(ENV, APPTAINER_BINDPATH="/sw/tool:/opt/tool:ro,/x")),
    ("/opt/tool/bin/app", (), dict(ENV, SINGULARITY_BIND="/opt/tool")),
    ("/work/u/app", (), dict(ENV, PWD="/work/u")),  # the working directory
])
def test_maybe_provided_at_run_time_stays_a_warning(program: str, binds: tuple,
                                                    env: Dict[str, str]) -> None:
    assert certain_missing_app((program,), _image((program,)), binds, env) is None


def test_a_program_in_the_image_is_no_finding() -> None:
    assert certain_missing_app(("/usr/bin/x",), _image(("/usr/bin/x",), "elf"), (), ENV) is None


def test_user_bind_destinations() -> None:
    env = {"APPTAINER_BIND": "/a:/b:ro, /c", "SINGULARITY_BINDPATH": "/d::rw"}
    assert user_bind_destinations(env) == ["/b", "/c", "/d"]

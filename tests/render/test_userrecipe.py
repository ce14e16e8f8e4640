"""The user's own recipe: Dockerfiles through the real spython, definition files split into
sections; what cannot be converted is one error naming the file and line."""

from __future__ import annotations

import pytest

from hpcrun.errors import UsageError
from hpcrun.render.userrecipe import parse_definition, parse_dockerfile, split_definition


def test_dockerfile_converted_by_spython() -> None:
    user = parse_dockerfile("FROM ubuntu:22.04\nRUN echo one \\\n  && echo two\n"
                            "COPY a.txt /opt/a.txt\nENV A=1 B=2\nLABEL team=hpc\n"
                            "ENTRYPOINT [\"/opt/run\"]\n", "Dockerfile")
    assert user.kind == "dockerfile" and user.base == "ubuntu:22.04"
    assert "echo one" in user.section("post") and "echo two" in user.section("post")
    assert "a.txt /opt/a.txt" in user.section("files")
    assert "export A=1" in user.section("environment")
    assert "team hpc" in user.section("labels")
    assert any("a.txt" in note for note in user.notes)  # spython: a.txt does not exist
    assert "/opt/run" in user.section("runscript")
    assert not any(name == "Stage" for name, _ in user.header)


@pytest.mark.parametrize("text,where,what", [
    ("", "Dockerfile", "empty"),
    ("# only a comment\n", "Dockerfile", "empty"),
    ("RUN echo hi\nFROM debian:bookworm\n", "Dockerfile:1", "not FROM"),
    ("FROM debian:bookworm\nRUNN echo typo\n", "Dockerfile:2", "'RUNN' is not a Dockerfile"),
    ("FROM debian:bookworm AS build\nRUN make\nFROM debian:bookworm\n", "Dockerfile:3",
     "multi-stage"),
    ("\x00\x01ELF binary\n", "Dockerfile:1", "is not a Dockerfile instruction"),
])
def test_dockerfiles_that_cannot_be_converted(text: str, where: str, what: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_dockerfile(text, "Dockerfile")
    assert caught.value.message.startswith(where)
    assert what in caught.value.message
    assert caught.value.hint and "\n" not in caught.value.message


def test_args_before_from_are_allowed() -> None:
    user = parse_dockerfile("ARG V=12\nFROM debian:${V}\n", "Dockerfile")
    assert user.base == "debian:12"


def test_definition_sections_in_order() -> None:
    header, sections = split_definition(
        "Bootstrap: docker\nFrom: debian:bookworm\n# note\n%files\n  a /a\n%post\n  echo hi\n"
        "%runscript\n  exec x\n", "d.def")
    assert header == (("Bootstrap", "docker"), ("From", "debian:bookworm"))
    assert [name for name, _ in sections] == ["files", "post", "runscript"]
    user = parse_definition("Bootstrap: docker\nFrom: debian:bookworm\n%post\n  echo hi\n",
                            "d.def")
    assert user.base == "debian:bookworm" and user.section("post") == "  echo hi"


@pytest.mark.parametrize("text,what", [
    ("From: debian:bookworm\n", "no 'Bootstrap:'"),
    ("Bootstrap: docker\nthis is not a header\n", "d.def:2: expected 'Key: value'"),
    ("Bootstrap: docker\nFrom: x:y\n%postt\n echo\n", "d.def:3: unknown section %postt"),
])
def test_bad_definition_files(text: str, what: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_definition(text, "d.def")
    assert what in caught.value.message

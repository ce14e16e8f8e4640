"""hpcrun recipe's generator: a pure function of the host MPI's requirements, a base and
the user's steps.  These tests give it requirements as the resolver would compute them
for several kinds of host; the real build is tests/e2e/test_your_own_image.py."""

from __future__ import annotations

import re

import pytest

from hpcrun.errors import ConfigError, ImageError, IncompatibleError, UsageError
from hpcrun.plan.model import ERROR, Diagnostic
from hpcrun.render.bases import BASES, find_base
from hpcrun.render.recipe import RecipeOptions, render_recipe
from hpcrun.render.userrecipe import parse_definition, parse_dockerfile
from hpcrun.resolve.requirements import HostRequirements, MountPoint, SymbolNeed


def mpich_host(**changes: object) -> HostRequirements:
    base = dict(site="t", family="mpich", implementation="MPICH", version="4.0.2",
                policy="full", c_soname="libmpich.so.12", c_file="libmpich.so.12.2.2",
                needs=(SymbolNeed("GLIBC", "GLIBC_2.34", "libc.so.6", "libmpich.so.12",
                                  "libmpich.so.12"),),
                mount_points=(MountPoint("/.hpcrun/lib", "dir"),
                              MountPoint("/.hpcrun/lib/ucx", "dir"),
                              MountPoint("/etc/site.conf", "file", "binds[0]")))
    base.update(changes)
    return HostRequirements(**base)  # type: ignore[arg-type]


def post(text: str) -> str:
    return text.split("\n%post\n", 1)[1]


def commands(text: str) -> list:
    """The %post lines that do something (not comments, not blank)."""
    return [line.strip() for line in post(text).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_mpich_host_gets_mpich_abi_on_a_glibc_that_suffices() -> None:
    text = render_recipe(mpich_host(), RecipeOptions(base="debian:bookworm"))
    assert text.startswith("#")
    assert "\nBootstrap: docker\nFrom: debian:bookworm\n" in text
    assert "apt-get install -y --no-install-recommends mpich libmpich-dev" in text
    assert "MPICC=mpicc.mpich python3 -m pip install" in text
    assert "--no-binary=mpi4py mpi4py==" in text
    assert "--break-system-packages" in text  # bookworm's Python is externally managed
    # says what glibc the host closure needs, and why
    assert "GLIBC_2.34" in text and "libmpich.so.12" in text and "glibc 2.36" in text
    assert "mkdir -p /.hpcrun/lib /.hpcrun/lib/ucx" in text
    assert "mkdir -p /etc && touch /etc/site.conf" in text
    assert "openmpi" not in " ".join(commands(text))


def test_every_added_step_has_a_comment_saying_why() -> None:
    text = render_recipe(mpich_host(), RecipeOptions(base="debian:bookworm"))
    lines = post(text).splitlines()
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(("apt-get install", "CFLAGS=", "MPICC=", "mkdir", "if [")):
            before = [x.strip() for x in lines[:index] if x.strip()]
            assert before[-1].startswith("#"), line


def test_open_mpi_host_gets_open_mpi() -> None:
    host = mpich_host(family="openmpi", implementation="Open MPI", version="4.1.4",
                      c_soname="libmpi.so.40", c_file="libmpi.so.40.30.4")
    text = render_recipe(host, RecipeOptions(base="debian:bookworm"))
    assert "apt-get install -y --no-install-recommends openmpi-bin libopenmpi-dev" in text
    assert "MPICC=mpicc.openmpi" in text
    assert "libmpich-dev" not in text


def test_intel_mpi_host_gets_the_mpich_abi_and_no_version_order() -> None:
    host = mpich_host(implementation="Intel MPI", version="2021.19",
                      c_soname="libmpi.so.12", c_file="libmpi.so.12.0.0")
    text = render_recipe(host, RecipeOptions())
    assert "libmpich-dev" in text
    assert "different implementations of the MPICH ABI: not ordered" in " ".join(
        line.strip(" #") for line in text.splitlines())


def test_glibc_too_old_for_the_host_closure_is_refused() -> None:
    host = mpich_host(needs=(SymbolNeed("GLIBC", "GLIBC_2.34", "libc.so.6", "libfabric.so.1",
                                        "libmpi.so.12 -> libfabric.so.1"),))
    with pytest.raises(IncompatibleError) as caught:
        render_recipe(host, RecipeOptions(base="debian:bullseye"))
    assert "glibc 2.31 is older than GLIBC_2.34" in caught.value.message
    assert "libfabric.so.1" in caught.value.message
    assert "--base debian:bookworm" in caught.value.hint


def test_policy_strict_refuses_another_minor_and_auto_choice_finds_a_match() -> None:
    host = mpich_host(version="3.4.1", policy="strict")
    with pytest.raises(IncompatibleError) as caught:
        render_recipe(host, RecipeOptions(base="debian:bookworm"))
    assert "strict" in caught.value.message
    # without --base: the first known base the policy accepts (bullseye's MPICH 3.4.1),
    # provided its glibc suffices for the host's needs
    host = mpich_host(version="3.4.1", policy="strict",
                      needs=(SymbolNeed("GLIBC", "GLIBC_2.17", "libc.so.6", "libmpich.so.12"),))
    text = render_recipe(host, RecipeOptions())
    assert "From: debian:bullseye" in text
    assert "--break-system-packages" not in text  # bullseye's pip has no such option


def test_policy_full_with_an_older_host_warns_in_the_recipe_when_the_base_is_given() -> None:
    host = mpich_host(version="3.4.1",
                      needs=(SymbolNeed("GLIBC", "GLIBC_2.17", "libc.so.6", "libmpich.so.12"),))
    text = render_recipe(host, RecipeOptions(base="debian:bookworm"))
    assert "# warning: policy \"full\"" in text
    assert "From: debian:bullseye" in render_recipe(host, RecipeOptions())


@pytest.mark.parametrize("reference", ["alpine:3.20", "centos:7", "debian@sha256:" + "0" * 64,
                                       "myregistry.example/debian:bookworm", "debian"])
def test_a_base_hpcrun_cannot_judge_is_refused(reference: str) -> None:
    with pytest.raises(ImageError) as caught:
        render_recipe(mpich_host(), RecipeOptions(base=reference))
    assert "cannot judge" in caught.value.message
    assert "debian:bookworm" in caught.value.hint


@pytest.mark.parametrize("reference,name", [
    ("debian:bookworm", "debian:bookworm"), ("debian:12", "debian:bookworm"),
    ("debian:12.5", "debian:bookworm"), ("debian:bookworm-slim", "debian:bookworm"),
    ("docker://debian:bookworm", "debian:bookworm"),
    ("docker.io/library/debian:bookworm@sha256:" + "0" * 64, "debian:bookworm"),
    ("ubuntu:22.04", "ubuntu:22.04"), ("ubuntu:jammy", "ubuntu:22.04"),
    ("debian:11", "debian:bullseye")])
def test_base_spellings(reference: str, name: str) -> None:
    found = find_base(reference)
    assert found is not None and found.name == name


def test_bases_table_is_sane() -> None:
    for base in BASES:
        assert re.match(r"^\d+\.\d+$", base.glibc)
        assert base.glibcxx.startswith("GLIBCXX_3.4.")
        assert find_base(base.name) is base


def test_debootstrap_bootstrap_and_ubuntu_universe() -> None:
    text = render_recipe(mpich_host(), RecipeOptions(base="ubuntu:22.04",
                                                     bootstrap="debootstrap"))
    assert "Bootstrap: debootstrap\nOSVersion: jammy\nMirrorURL: http://archive.ubuntu.com/ubuntu" \
        in text
    assert "main universe" in text
    text = render_recipe(mpich_host(), RecipeOptions(base="debian:bookworm",
                                                     bootstrap="debootstrap"))
    assert "OSVersion: bookworm\nMirrorURL: http://deb.debian.org/debian" in text
    assert "universe" not in text


def test_pip_ca_is_a_build_argument_empty_by_default() -> None:
    text = render_recipe(mpich_host(), RecipeOptions())
    assert "\n%arguments\n" in text and "\n    PIP_CERT=\n" in text
    assert "\n    MPI4PY_CFLAGS=\n" in text and 'CFLAGS="{{ MPI4PY_CFLAGS }}" MPICC=' in text
    assert 'if [ -n "{{ PIP_CERT }}" ]; then export PIP_CERT="{{ PIP_CERT }}"; fi' in text


def test_mpi5_abi_only_when_the_host_ships_it() -> None:
    with pytest.raises(IncompatibleError) as caught:
        render_recipe(mpich_host(), RecipeOptions(abi="mpi5"))
    assert "libmpi_abi.so.1" in caught.value.message
    host = mpich_host(abi_soname="libmpi_abi.so.1")
    text = render_recipe(host, RecipeOptions(abi="mpi5"))
    assert "mpich==" in text and "MPICC=mpicc_abi" in text and "ldconfig" in text
    assert "org.hpcrun.mpi.family mpi-abi" in text


def test_host_without_mpi_or_with_missing_libraries_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError):
        render_recipe(mpich_host(family="none"), RecipeOptions())
    broken = mpich_host(diagnostics=(Diagnostic(ERROR, "mpi-library-missing",
                                                "host MPI library /x/libmpi.so.12 does not exist",
                                                "fix mpi.libraries"),))
    with pytest.raises(ConfigError) as caught:
        render_recipe(broken, RecipeOptions())
    assert "/x/libmpi.so.12" in caught.value.message


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        render_recipe(mpich_host(), RecipeOptions(bootstrap="yum"))
    with pytest.raises(UsageError):
        render_recipe(mpich_host(), RecipeOptions(abi="mpi4"))


DOCKERFILE = """\
# the user's own image
ARG TAG=bookworm
FROM debian:${TAG}
COPY app /opt/app
RUN apt-get update && \\
    apt-get install -y --no-install-recommends make
ENV APP_HOME=/opt/app
WORKDIR /opt/app
CMD ["python3", "hello.py"]
"""


def test_dockerfile_steps_come_after_the_mpi_layer(tmp_path: object) -> None:
    user = parse_dockerfile(DOCKERFILE, "Dockerfile")
    assert user.base == "debian:bookworm"
    text = render_recipe(mpich_host(), RecipeOptions(), user)
    assert "From: debian:bookworm" in text
    assert "%files\napp /opt/app" in text
    body = post(text)
    assert body.index("libmpich-dev") < body.index("your own steps, from Dockerfile") < \
        body.index("apt-get install -y --no-install-recommends make")
    assert "export APP_HOME=/opt/app" in text.split("%environment", 1)[1]
    assert "%runscript" in text and "python3 hello.py" in text.split("%runscript", 1)[1]


def test_definition_file_keeps_its_sections_and_its_base() -> None:
    user = parse_definition("Bootstrap: docker\nFrom: ubuntu:24.04\n\n%post\n    make -C /src\n"
                            "%runscript\n    exec /src/app \"$@\"\n", "app.def")
    text = render_recipe(mpich_host(), RecipeOptions(), user)
    assert "From: ubuntu:24.04" in text and "make -C /src" in text
    assert "exec /src/app" in text
    user = parse_definition("Bootstrap: debootstrap\nOSVersion: bookworm\n"
                            "MirrorURL: http://deb.debian.org/debian\n", "d.def")
    text = render_recipe(mpich_host(), RecipeOptions(), user)
    assert "Bootstrap: debootstrap\nOSVersion: bookworm" in text
    user = parse_definition("Bootstrap: yum\nOSVersion: 9\n", "y.def")
    with pytest.raises(ImageError) as caught:
        render_recipe(mpich_host(), RecipeOptions(), user)
    assert "y.def" in caught.value.message and "yum" in caught.value.message

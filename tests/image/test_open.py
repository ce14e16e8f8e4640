"""open_image: every image kind, SIF overlays, metadata, encrypted images, URIs, bad paths."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict

import pytest

from helpers.sif_corpus import HELLO
from helpers.sifwriter import SifObject, partition, wrap_squashfs_as_sif, write_sif
from hpcrun.errors import EncryptedImageError, ImageError
from hpcrun.image import sif as S
from hpcrun.image.open import (
    UncheckedImage,
    dependencies_unchanged,
    find_cached_sif,
    image_identity,
    open_image,
    parse_env_script,
)

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
MKSQUASHFS = shutil.which("mksquashfs")
MKE2FS = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
DEBUGFS = shutil.which("debugfs") or "/usr/sbin/debugfs"

ENV_DOCKER = """#!/bin/sh
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-/opt/image/lib}"
export MPI_DIR='/opt/mpich'
"""
ENV_DEFFILE = """#!/bin/sh
# Custom environment shell code should follow
export OMP_NUM_THREADS=4 MPICH_VERSION="4.0.2"
PATH="$MPI_DIR/bin:$PATH"
if [ -z "$X" ]; then
    export IGNORED=1
fi
"""
LABELS = {"org.label-schema.schema-version": "1.0", "MAINTAINER": "hpc team", "n": 3}


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("open") / "rootfs"
    lib = root / "usr" / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in ("libc.so.6", "libmpich.so.12"):
        real = Path(os.path.realpath(LIBDIR / name))
        shutil.copy2(real, lib / real.name)
        if real.name != name:
            (lib / name).symlink_to(real.name)
    (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "etc" / "shadowed").write_text("lower\n")
    (root / "etc" / "deleted").write_text("lower\n")
    env = root / ".singularity.d" / "env"
    env.mkdir(parents=True)
    (env / "10-docker2singularity.sh").write_text(ENV_DOCKER)
    (env / "90-environment.sh").write_text(ENV_DEFFILE)
    (env / "README").write_text("export NOT_A_SCRIPT=1\n")
    (root / ".singularity.d" / "labels.json").write_text(json.dumps(LABELS))
    return root


@pytest.fixture(scope="session")
def squashfs(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if MKSQUASHFS is None:
        pytest.skip("squashfs-tools (mksquashfs) is not installed")
    out = tmp_path_factory.mktemp("sq") / "image.sqfs"
    subprocess.run([MKSQUASHFS, str(rootfs), str(out), "-noappend", "-quiet", "-comp", "gzip"],
                   check=True, capture_output=True)
    return out


def _overlay(base: Path, layout_dirs: bool) -> Path:
    """An ext3 overlay: /etc/shadowed replaced, /etc/deleted whited out, /upper.txt added.

    With ``layout_dirs`` the layer sits in /upper beside /work, as ``apptainer overlay
    create`` makes it; without, at the root of the file system.
    """
    src = base / "src"
    layer = src / "upper" if layout_dirs else src
    (layer / "etc").mkdir(parents=True)
    if layout_dirs:
        (src / "work").mkdir()
    (layer / "etc" / "shadowed").write_text("upper\n")
    (layer / "upper.txt").write_text("only in the overlay\n")
    image = base / "overlay.img"
    subprocess.run([MKE2FS, "-q", "-F", "-t", "ext3", "-d", str(src), str(image), "4M"],
                   check=True, capture_output=True)
    commands = base / "debugfs.cmds"
    commands.write_text(f"cd {'/upper' if layout_dirs else ''}/etc\nmknod deleted c 0 0\n")
    subprocess.run([DEBUGFS, "-w", "-f", str(commands), str(image)], check=True,
                   capture_output=True)
    return image


def _env(opened: object) -> Dict[str, str]:
    return dict(opened.environment)  # type: ignore[attr-defined]


def _check_metadata(opened: object) -> None:
    env = _env(opened)
    assert env["PATH"] == (
        "/opt/mpich/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    )
    assert env["LD_LIBRARY_PATH"] == "/opt/image/lib"
    assert env["OMP_NUM_THREADS"] == "4" and env["MPICH_VERSION"] == "4.0.2"
    assert env["IGNORED"] == "1"  # a static reading takes assignments inside blocks too
    assert "NOT_A_SCRIPT" not in env
    labels = dict(opened.labels)  # type: ignore[attr-defined]
    assert labels["MAINTAINER"] == "hpc team" and labels["n"] == "3"


# --- the kinds ------------------------------------------------------------------------------


def test_real_sif_one_group(sif_data: Path) -> None:
    opened = open_image(str(sif_data / "images" / "one-group.sif"))
    assert opened.kind == "sif" and opened.sif is not None
    assert opened.tree.read("/hello.txt") == HELLO
    assert opened.architecture == "i686"
    uuid = S.read_sif(str(sif_data / "images" / "one-group.sif")).header.uuid
    assert opened.identity.startswith(f"sif:{uuid}:2@36864+4096:")
    assert opened.environment == () and opened.labels == ()


def test_real_sif_two_groups_uses_the_primary_partition(sif_data: Path) -> None:
    opened = open_image(str(sif_data / "images" / "two-groups.sif"))
    assert opened.tree.read("/hello.txt") == HELLO
    assert "2@36864+4096" in opened.identity and "3@" not in opened.identity


def test_signed_images_open(sif_data: Path) -> None:
    for name in ("one-group-signed-pgp.sif", "one-group-signed-dsse.sif",
                 "two-groups-signed-pgp.sif", "two-groups-signed-dsse.sif"):
            opened = open_image(str(sif_data / "images" / name))
            assert opened.tree.read("/hello.txt") == HELLO


def test_legacy_signed_images_have_dummy_partitions(sif_data: Path) -> None:
    """Their 4-byte 'squashfs' partitions are not file systems: an ImageError, not a crash."""
    with pytest.raises(ImageError):
        open_image(str(sif_data / "images" / "one-group-signed-legacy.sif")).tree.read("/x")


def test_bare_squashfs(squashfs: Path) -> None:
    opened = open_image(str(squashfs))
    assert opened.kind == "squashfs" and opened.sif is None and opened.architecture == ""
    assert opened.tree.realpath("/lib/x86_64-linux-gnu/libmpich.so.12").startswith(
        "/usr/lib/x86_64-linux-gnu/libmpich.so.12."
    )
    _check_metadata(opened)
    st = squashfs.stat()
    assert opened.identity == (
        f"squashfs:size={st.st_size}:mtime={st.st_mtime_ns}:ino={st.st_ino}:dev={st.st_dev}"
    )


def test_bare_ext3(rootfs: Path, tmp_path: Path) -> None:
    image = tmp_path / "root.ext3"
    subprocess.run([MKE2FS, "-q", "-F", "-t", "ext3", "-d", str(rootfs), str(image), "80M"],
                   check=True, capture_output=True)
    opened = open_image(str(image))
    assert opened.kind == "ext3"
    assert opened.tree.read("/etc/os-release") == (rootfs / "etc/os-release").read_bytes()
    _check_metadata(opened)


def test_sandbox(rootfs: Path) -> None:
    opened = open_image(str(rootfs))
    assert opened.kind == "sandbox" and opened.identity.startswith(f"sandbox:{rootfs}:")
    _check_metadata(opened)
    deps = opened.dependencies()
    assert ("/.singularity.d/env/90-environment.sh",
            (rootfs / ".singularity.d/env/90-environment.sh").stat().st_mtime_ns) in deps
    assert dependencies_unchanged(str(rootfs), deps)


def test_sandbox_dependencies_notice_changes(rootfs: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(rootfs, copy, symlinks=True)
    opened = open_image(str(copy))
    deps = opened.dependencies()
    os.utime(copy / ".singularity.d" / "labels.json", ns=(5, 5))
    assert not dependencies_unchanged(str(copy), deps)


def test_wrapped_squashfs_sif(squashfs: Path, tmp_path: Path) -> None:
    sif_path = wrap_squashfs_as_sif(squashfs, tmp_path / "image.sif", arch="arm64")
    opened = open_image(str(sif_path))
    assert opened.kind == "sif" and opened.architecture == "aarch64"
    _check_metadata(opened)
    assert opened.tree.read("/etc/os-release") == b'ID=debian\nVERSION_ID="12"\n'
    before = opened.identity
    os.utime(sif_path, ns=(10**18, 10**18))
    assert open_image(str(sif_path)).identity != before


@pytest.mark.parametrize("layout_dirs", [True, False])
def test_sif_overlay_partitions_shadow_the_squashfs(
    squashfs: Path, tmp_path: Path, layout_dirs: bool
) -> None:
    overlay = _overlay(tmp_path, layout_dirs)
    sif_path = wrap_squashfs_as_sif(squashfs, tmp_path / "ovl.sif", overlays=[overlay])
    opened = open_image(str(sif_path))
    tree = opened.tree
    assert tree.read("/etc/shadowed") == b"upper\n"
    assert tree.lookup("/etc/deleted") is None
    assert "deleted" not in tree.listdir("/etc") and "os-release" in tree.listdir("/etc")
    assert tree.read("/upper.txt") == b"only in the overlay\n"
    assert tree.read("/etc/os-release").startswith(b"ID=debian")
    assert not tree.exists("/work") and not tree.exists("/upper/etc")
    # the ext3 root (with mke2fs's lost+found) is the layer only without /upper and /work
    assert tree.exists("/lost+found") is not layout_dirs
    assert opened.identity.count("@") == 2


def test_two_overlays_last_on_top(squashfs: Path, tmp_path: Path) -> None:
    first = _overlay(tmp_path / "a", True)
    second_dir = tmp_path / "b" / "src" / "upper"
    (second_dir / "etc").mkdir(parents=True)
    (tmp_path / "b" / "src" / "work").mkdir()
    (second_dir / "etc" / "shadowed").write_text("top\n")
    second = tmp_path / "b" / "o.img"
    subprocess.run([MKE2FS, "-q", "-F", "-t", "ext3", "-d", str(tmp_path / "b" / "src"),
                    str(second), "4M"], check=True, capture_output=True)
    sif_path = wrap_squashfs_as_sif(squashfs, tmp_path / "two.sif", overlays=[first, second])
    tree = open_image(str(sif_path)).tree
    assert tree.read("/etc/shadowed") == b"top\n"
    assert tree.read("/upper.txt") == b"only in the overlay\n"
    assert tree.lookup("/etc/deleted") is None


def test_sif_env_object_as_json(squashfs: Path, tmp_path: Path) -> None:
    sif_path = write_sif(
        tmp_path / "jenv.sif",
        [SifObject(S.DATA_ENVVAR, b'{"JSON_ENV": "v", "N": 2}'), partition(squashfs)],
    )
    env = _env(open_image(str(sif_path)))
    assert env["JSON_ENV"] == "v" and env["N"] == "2" and env["OMP_NUM_THREADS"] == "4"


def test_sif_metadata_objects(squashfs: Path, tmp_path: Path) -> None:
    sif_path = write_sif(
        tmp_path / "meta.sif",
        [
            SifObject(S.DATA_LABELS, json.dumps({"FROM_SIF": "yes", "MAINTAINER": "x"}).encode()),
            SifObject(S.DATA_ENVVAR, b"export SIF_ENV=1\nMPI_DIR=/from/sif\n"),
            partition(squashfs),
        ],
    )
    opened = open_image(str(sif_path))
    labels = dict(opened.labels)
    assert labels["FROM_SIF"] == "yes" and labels["MAINTAINER"] == "hpc team"  # file wins
    env = _env(opened)
    assert env["SIF_ENV"] == "1" and env["MPI_DIR"] == "/opt/mpich"


def test_image_identity_matches_open_image(
    sif_data: Path, squashfs: Path, rootfs: Path, overlay_sif: Path
) -> None:
    for image in (str(sif_data / "images" / "two-groups.sif"), str(squashfs), str(rootfs),
                  str(overlay_sif)):
        opened = open_image(image)
        assert image_identity(image) == (opened.kind, opened.identity)


@pytest.fixture()
def overlay_sif(squashfs: Path, tmp_path: Path) -> Path:
    return wrap_squashfs_as_sif(squashfs, tmp_path / "o.sif", overlays=[_overlay(tmp_path, True)])


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fstype", [S.FS_ENCRYPTED_SQUASHFS, S.FS_GOCRYPTFS])
def test_encrypted_partition(squashfs: Path, tmp_path: Path, fstype: int) -> None:
    sif_path = write_sif(tmp_path / "enc.sif", [partition(squashfs, fstype=fstype)])
    with pytest.raises(EncryptedImageError, match="cannot inspect an encrypted image") as info:
        open_image(str(sif_path))
    assert "--no-check" in info.value.hint and str(sif_path) in str(info.value)


def test_sif_without_partition(sif_data: Path) -> None:
    with pytest.raises(ImageError, match="no primary system partition") as info:
        open_image(str(sif_data / "images" / "empty.sif"))
    assert "empty.sif" in str(info.value)


def test_unreadable_partition_type(squashfs: Path, tmp_path: Path) -> None:
    sif_path = write_sif(tmp_path / "raw.sif", [partition(squashfs, fstype=S.FS_RAW)])
    with pytest.raises(ImageError, match="Raw file system"):
        open_image(str(sif_path))


@pytest.mark.parametrize(
    "damage,words",
    [
        (lambda b: b[:2000], "truncated SIF file"),
        (lambda b: b[:20000], "descriptor table"),
        (lambda b: b[:-10], "truncated SIF file: object 2"),
        (lambda b: b[:32] + b"XIF" + b[35:], "not a container image"),
        (lambda b: b[:42] + b"99" + b[44:], "unsupported SIF version"),
    ],
)
def test_damaged_sif(sif_data: Path, tmp_path: Path, damage: object, words: str) -> None:
    data = (sif_data / "images" / "one-group.sif").read_bytes()
    path = tmp_path / "damaged.sif"
    path.write_bytes(damage(data))  # type: ignore[operator]
    with pytest.raises(ImageError, match=words) as info:
        open_image(str(path))
    assert str(path) in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such image") as info:
        open_image(str(tmp_path / "missing.sif"))
    assert str(tmp_path / "missing.sif") in str(info.value)


def test_directory_without_rootfs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "results.csv").write_text("1,2\n")
    with pytest.raises(ImageError, match="no container root file system") as info:
        open_image(str(tmp_path / "data"))
    assert str(tmp_path / "data") in str(info.value)


def test_fifo_and_device(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/null"):
        with pytest.raises(ImageError, match="not a regular file") as info:
            open_image(path)
        assert path in str(info.value)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "libc-copy"
    shutil.copy(os.path.realpath(LIBDIR / "libc.so.6"), path)
    with pytest.raises(ImageError, match="not a container image"):
        open_image(str(path))


# --- URIs and the runtime cache -------------------------------------------------------------

DIGEST = "0123456789abcdef" * 4


def test_uri_without_cache_is_unchecked(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "APPTAINER_CACHEDIR": str(tmp_path / "ac")}
    assert find_cached_sif("docker://ubuntu:22.04", env) is None
    with pytest.raises(UncheckedImage, match="checks are skipped") as info:
        open_image("docker://ubuntu:22.04", environ=env)
    assert isinstance(info.value, ImageError) and "apptainer pull" in info.value.hint
    with pytest.raises(UncheckedImage, match="does not read this kind"):
        open_image("oci-archive:/tmp/x.tar", environ=env)


@pytest.mark.parametrize(
    "uri,kind,name,variable",
    [
        (f"docker://ubuntu@sha256:{DIGEST}", "oci-tmp", DIGEST, "APPTAINER_CACHEDIR"),
        (f"library://lib/default/alpine:sha256.{DIGEST}", "library", f"sha256.{DIGEST}",
         "APPTAINER_CACHEDIR"),
        (f"oras://ghcr.io/x/y@sha256:{DIGEST}", "oras", DIGEST, "SINGULARITY_CACHEDIR"),
    ],
)
def test_uri_found_in_the_cache(
    sif_data: Path, tmp_path: Path, uri: str, kind: str, name: str, variable: str
) -> None:
    parent = tmp_path / "parent"
    (parent / "cache" / kind).mkdir(parents=True)
    target = parent / "cache" / kind / name
    shutil.copy(sif_data / "images" / "one-group.sif", target)
    env = {"HOME": str(tmp_path / "home"), variable: str(parent)}
    assert find_cached_sif(uri, env) == str(target)
    opened = open_image(uri, environ=env)
    assert opened.source == uri and opened.path == str(target)
    assert opened.tree.read("/hello.txt") == HELLO


def test_default_cache_under_home(sif_data: Path, tmp_path: Path) -> None:
    target = tmp_path / ".singularity" / "cache" / "oci-tmp" / DIGEST
    target.parent.mkdir(parents=True)
    shutil.copy(sif_data / "images" / "one-group.sif", target)
    assert find_cached_sif(f"docker://x@sha256:{DIGEST}", {"HOME": str(tmp_path)}) == str(target)


# --- the static environment reading ---------------------------------------------------------


def test_parse_env_script() -> None:
    env = parse_env_script(
        "\n".join(
            [
                "export A=1 B='two words' C=\"x${A}y\"",
                "D=${UNSET:-default} E=${A:+set} F=${UNSET:+set}",
                "G=\"${NOPE-\"quoted default\"}\"",
                "H=$A$B  # trailing comment",
                "I='$A literal' ; echo ignored",
                "J=a\\ b",
                "K=$UNKNOWN:/x",
                "echo not=an assignment",
                "L=${A%%x}",
            ]
        )
    )
    assert env == {
        "A": "1",
        "B": "two words",
        "C": "x1y",
        "D": "default",
        "E": "set",
        "F": "",
        "G": "quoted default",
        "H": "1two words",
        "I": "$A literal",
        "J": "a b",
        "K": "$UNKNOWN:/x",
        "L": "${A%%x}",
    }


APPTAINER_99_BASE = """if [ -z "$LD_LIBRARY_PATH" ]; then
    LD_LIBRARY_PATH="/.singularity.d/libs"
else
    LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/.singularity.d/libs"
fi
export LD_LIBRARY_PATH PS1
"""


@pytest.mark.parametrize(("before", "after"), [
    ({"LD_LIBRARY_PATH": "/opt/image/lib"}, "/opt/image/lib:/.singularity.d/libs"),
    ({}, "/.singularity.d/libs"),
])
def test_parse_env_script_evaluates_emptiness_tests(before: dict, after: str) -> None:
    """Apptainer's 99-base.sh: exactly one branch applies, as the container's shell runs it."""
    assert parse_env_script(APPTAINER_99_BASE, dict(before))["LD_LIBRARY_PATH"] == after


# The shape of what `apptainer build` (1.4) writes as /.singularity.d/env/99-runtimevars.sh
# and 95-apps.sh: tests of `${X:-}` guard PATH replacements that apply only when the user
# asked for them at run time.
APPTAINER_RUNTIME_VARS = """if [ -n "${SING_USER_DEFINED_PREPEND_PATH:-}" ]; then
	PATH="${SING_USER_DEFINED_PREPEND_PATH}:${PATH}"
fi
if [ -n "${SING_USER_DEFINED_PATH:-}" ]; then
	PATH="${SING_USER_DEFINED_PATH}"
fi
if test -n "${SINGULARITY_APPNAME:-}"; then
    if test -d "/scif/apps/${SINGULARITY_APPNAME:-}/"; then
        SCIF_APPS="/scif/apps"
    fi
fi
export PATH
"""


def test_parse_env_script_tests_with_an_empty_default() -> None:
    """Unset runtime variables: no branch applies and PATH keeps its value."""
    env = parse_env_script(APPTAINER_RUNTIME_VARS, {"PATH": "/usr/bin:/bin"})
    assert env == {"PATH": "/usr/bin:/bin"}
    env = parse_env_script(APPTAINER_RUNTIME_VARS, {"PATH": "/bin", "SING_USER_DEFINED_PATH": "/x"})
    assert env["PATH"] == "/x"


def test_parse_env_script_reads_only_the_first_branch_of_other_conditions() -> None:
    text = "if grep -q x /etc/y; then\n  A=1\nelif true; then\n  A=2\nelse\n  A=3\nfi\nB=4\n"
    assert parse_env_script(text) == {"A": "1", "B": "4"}
    nested = 'if [ -n "$X" ]; then\n if [ -z "$Y" ]; then\n  Z=1\n fi\nfi\n'
    assert parse_env_script(nested, {"X": "x"}) == {"X": "x", "Z": "1"}
    assert parse_env_script(nested, {}) == {}

"""The sandbox backend: a host directory read as an image root, never following host links."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hpcrun.errors import ImageError
from hpcrun.image.fs import DIR, FILE, SYMLINK, Tree
from hpcrun.image.sandbox import SandboxBackend

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")


@pytest.fixture()
def sandbox(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    lib = root / "usr" / "lib" / "x86_64-linux-gnu"
    lib.mkdir(parents=True)
    shutil.copy2(os.path.realpath(LIBDIR / "libc.so.6"), lib / "libc.so.6")
    (lib / "libz.so.1").symlink_to(os.path.basename(os.path.realpath(LIBDIR / "libz.so.1")))
    shutil.copy2(os.path.realpath(LIBDIR / "libz.so.1"), lib)
    (root / "lib").symlink_to("usr/lib")
    # An absolute link: on the host it would point at the HOST's libc; in the image it must
    # resolve inside the sandbox.
    (root / "abs-libc").symlink_to("/usr/lib/x86_64-linux-gnu/libc.so.6")
    # A link escaping upwards: .. stops at the image root.
    (root / "escape").symlink_to("../../../../../../etc/hostname-of-the-image")
    (root / "etc").mkdir()
    (root / "etc" / "hostname-of-the-image").write_text("inside\n")
    return root


def test_links_resolve_inside_the_sandbox(sandbox: Path) -> None:
    tree = Tree(SandboxBackend(str(sandbox)))
    assert tree.realpath("/lib/x86_64-linux-gnu/libz.so.1") == "/usr/lib/x86_64-linux-gnu/" + (
        os.path.basename(os.path.realpath(LIBDIR / "libz.so.1"))
    )
    assert tree.realpath("/abs-libc") == "/usr/lib/x86_64-linux-gnu/libc.so.6"
    assert tree.read("/abs-libc") == (sandbox / "usr/lib/x86_64-linux-gnu/libc.so.6").read_bytes()
    assert tree.read("/escape") == b"inside\n"
    assert tree.readlink("/lib") == "usr/lib"


def test_node_kinds_and_partial_reads(sandbox: Path) -> None:
    backend = SandboxBackend(str(sandbox))
    root = backend.root()
    assert root.kind == DIR
    lib = backend.child(root, "lib")
    assert lib is not None and lib.kind == SYMLINK  # lstat, not stat
    usr = backend.child(root, "usr")
    assert usr is not None and usr.kind == DIR
    assert backend.child(root, "..") is None and backend.child(root, "a/b") is None
    tree = Tree(backend)
    node = tree.lookup("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert node is not None and node.kind == FILE
    host = (sandbox / "usr/lib/x86_64-linux-gnu/libc.so.6").read_bytes()
    assert node.size == len(host)
    assert tree.read("/usr/lib/x86_64-linux-gnu/libc.so.6", 100, 50) == host[100:150]
    assert tree.read("/usr/lib/x86_64-linux-gnu/libc.so.6", len(host) - 3, 100) == host[-3:]
    with tree.open("/lib/x86_64-linux-gnu/libc.so.6") as f:
        f.seek(-16, os.SEEK_END)
        assert f.read() == host[-16:]


def test_host_symlink_to_file_is_not_followed_on_read(sandbox: Path, tmp_path: Path) -> None:
    """Even handed a symlink node directly, read must not open the host's target."""
    secret = tmp_path / "host-secret"
    secret.write_text("host data")
    (sandbox / "trap").symlink_to(str(secret))
    backend = SandboxBackend(str(sandbox))
    node = backend.child(backend.root(), "trap")
    assert node is not None and node.kind == SYMLINK
    with pytest.raises(ImageError, match="trap"):
        backend.read(node)
    assert Tree(backend).lookup(str(secret)) is None  # resolved in the image: absent


def test_seen_and_identity_track_reads(sandbox: Path) -> None:
    backend = SandboxBackend(str(sandbox))
    tree = Tree(backend)
    tree.read("/etc/hostname-of-the-image")
    seen = dict(backend.seen())
    assert "/etc/hostname-of-the-image" in seen and "/usr" not in seen
    assert backend.identity() == backend.seen()
    os.utime(sandbox / "etc" / "hostname-of-the-image", ns=(1, 1))
    assert dict(backend.identity())["/etc/hostname-of-the-image"] == 1
    (sandbox / "etc" / "hostname-of-the-image").unlink()
    assert dict(backend.identity())["/etc/hostname-of-the-image"] == -1


def test_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ImageError, match="not a directory"):
        SandboxBackend(str(tmp_path / "f")).root()

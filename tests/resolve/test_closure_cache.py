"""The host-closure cache: a hit is the closure a walk gives, and any change it watches
(a library replaced, a file added to a searched directory, ld.so.cache rewritten) walks
again.  Fake host trees hold real Debian libraries copied from this machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, List

import pytest

from helpers.mpi_trees import HOST_LIBDIR
from hpcrun.elf.model import ElfInfo
from hpcrun.elf.reader import read_elf_file
from hpcrun.host.facts import HostFacts
from hpcrun.image.cache import FactsCache
from hpcrun.plan.model import Request
from hpcrun.resolve import closure as closuremod
from hpcrun.resolve.closure import (
    CACHE,
    Closure,
    cached_host_closure,
    closure_cache_key,
    closure_from_json,
    closure_to_json,
    host_closure,
)
from hpcrun.resolve.resolver import resolve

MPICH = f"{HOST_LIBDIR}/libmpich.so.12"
HWLOC = f"{HOST_LIBDIR}/libhwloc.so.15"
ROOTS = ["/opt/a/lib/libmpich.so.12"]
LIBRARY_PATH = ("/opt/a/lib",)


def _need(*paths: str) -> None:
    for path in paths:
        if not os.path.exists(path):
            pytest.skip(f"{path} is not installed")


def copy_host_file(root: Path, path: str, dest: str) -> None:
    """A private copy (never a hard link: these tests rewrite and re-date files) of a real
    library at host path ``dest``, with ``dest`` a link to it when ``path`` is one."""
    real = os.path.realpath(path)
    where = root / os.path.dirname(dest).lstrip("/")
    where.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real, where / os.path.basename(real))
    if os.path.basename(dest) != os.path.basename(real):
        os.symlink(os.path.basename(real), where / os.path.basename(dest))


def _age(root: Path, seconds: float = 120.0) -> None:
    """Set every mtime in the tree in the past (a freshly written file is never cached)."""
    when = time.time_ns() - int(seconds * 1e9)
    for here, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(here, name)
            st = os.lstat(path)
            assert st.st_nlink == 1 or os.path.isdir(path), f"{path} is shared: not re-dated"
            os.utime(path, ns=(when, when), follow_symlinks=False)
    os.utime(root, ns=(when, when))


def _count_reads(monkeypatch: pytest.MonkeyPatch, module: object, reader: str) -> List[str]:
    """Every ELF file ``module.reader`` reads from now on (it is replaced by a counting one)."""
    seen: List[str] = []

    def counting(path: str) -> ElfInfo:
        seen.append(path)
        return read_elf_file(path)

    monkeypatch.setattr(module, reader, counting)
    return seen


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """Every ELF file the closure walk reads from now on."""
    return _count_reads(monkeypatch, closuremod, "_default_reader")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """libmpich.so.12 in /opt/a/lib; its libhwloc/libucp/libucs are nowhere yet."""
    _need(MPICH, HWLOC)
    root = tmp_path / "host"
    copy_host_file(root, MPICH, dest=ROOTS[0])
    return root


@pytest.fixture
def cache(tmp_path: Path) -> FactsCache:
    return FactsCache(tmp_path / "cache")


def _cached(root: Path, cache: FactsCache) -> Closure:
    return cached_host_closure(ROOTS, root=root, library_path=LIBRARY_PATH, cache=cache)


def _fresh(root: Path) -> Closure:
    return host_closure(ROOTS, root=root, library_path=LIBRARY_PATH)


def test_a_hit_is_the_walked_closure_and_reads_no_elf_file(
        tree: Path, cache: FactsCache, reads: List[str]) -> None:
    copy_host_file(tree, HWLOC, dest="/opt/a/lib/libhwloc.so.15")
    _age(tree)
    miss = _cached(tree, cache)
    assert reads  # the first call walked
    assert miss.find("libhwloc.so.15") is not None and miss.missing  # libucp/libucs absent
    del reads[:]
    hit = _cached(tree, cache)
    assert reads == []
    assert hit == miss == _fresh(tree)
    assert [lib.info for lib in hit.libraries] == [lib.info for lib in miss.libraries]


def test_a_file_added_to_a_searched_directory_walks_again(
        tree: Path, cache: FactsCache, reads: List[str]) -> None:
    _age(tree)
    before = _cached(tree, cache)
    assert before.find("libhwloc.so.15") is None
    assert "libhwloc.so.15" in [name for name, _chain in before.missing]
    copy_host_file(tree, HWLOC, dest="/opt/a/lib/libhwloc.so.15")
    del reads[:]
    after = _cached(tree, cache)
    assert reads
    assert after.find("libhwloc.so.15") is not None
    assert after == _fresh(tree) != before


def test_a_library_rewritten_in_place_walks_again(
        tree: Path, cache: FactsCache, reads: List[str]) -> None:
    _need(f"{HOST_LIBDIR}/libudev.so.1")
    copy_host_file(tree, HWLOC, dest="/opt/a/lib/libhwloc.so.15")
    _age(tree)
    before = _cached(tree, cache)
    hwloc = before.find("libhwloc.so.15")
    assert hwloc is not None
    target = tree / hwloc.real_path.lstrip("/")
    inode = os.stat(target).st_ino
    assert os.stat(target).st_nlink == 1  # this tree's own copy
    with open(target, "r+b") as out:  # same inode, same directory entries: only the file
        out.truncate(0)
        out.write(Path(os.path.realpath(f"{HOST_LIBDIR}/libudev.so.1")).read_bytes())
    assert os.stat(target).st_ino == inode
    del reads[:]
    after = _cached(tree, cache)
    assert reads
    assert after == _fresh(tree) != before
    changed = after.find("libhwloc.so.15")
    assert changed is not None and changed.info.soname == "libudev.so.1"


def _ldconfig(root: Path, dirs: List[str]) -> None:
    if shutil.which("ldconfig") is None and not os.path.exists("/sbin/ldconfig"):
        pytest.skip("ldconfig is not installed")
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/gen.conf").write_text("".join(f"{d}\n" for d in dirs))
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    subprocess.run([exe, "-X", "-r", str(root), "-f", "/etc/gen.conf"], check=True,
                   capture_output=True)


def test_a_rewritten_ld_so_cache_walks_again(
        tree: Path, cache: FactsCache, reads: List[str]) -> None:
    copy_host_file(tree, HWLOC, dest="/opt/b/libhwloc.so.15")
    _ldconfig(tree, ["/opt/b"])
    _age(tree)
    before = _cached(tree, cache)
    hwloc = before.find("libhwloc.so.15")
    assert hwloc is not None and hwloc.found_via == CACHE
    del reads[:]
    assert _cached(tree, cache) == before and reads == []  # stored, and a hit
    _ldconfig(tree, [])  # the same tree, a cache that no longer lists /opt/b
    after = _cached(tree, cache)
    assert reads
    assert after.find("libhwloc.so.15") is None
    assert after == _fresh(tree) != before


def test_a_corrupt_entry_is_ignored(tree: Path, cache: FactsCache, reads: List[str]) -> None:
    _age(tree)
    good = _cached(tree, cache)
    key = closure_cache_key(ROOTS, tree, LIBRARY_PATH, 0, "", "")
    entry = cache.get(key)
    assert entry is not None and closure_from_json(entry["value"]) == good
    damaged = dict(entry, value=dict(entry["value"], libraries=[["/x", 1, [], 2]]))
    cache.put(key, damaged)
    del reads[:]
    assert _cached(tree, cache) == good
    assert reads  # walked again
    cache.put(key, dict(entry, value=dict(entry["value"], elf_class="64")))
    assert _cached(tree, cache) == good
    Path(cache._path(key)).write_bytes(b"{not json")
    del reads[:]
    assert _cached(tree, cache) == good
    assert reads


def test_json_round_trip_keeps_every_field(tree: Path) -> None:
    copy_host_file(tree, HWLOC, dest="/opt/a/lib/libhwloc.so.15")
    walked = _fresh(tree)
    assert walked.diagnostics and walked.libraries
    assert closure_from_json(closure_to_json(walked)) == walked


def test_resolver_hit_gives_the_same_contribution(
        host_sites: Callable, apps: Callable, tmp_path: Path, reads: List[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = host_sites("debian-openmpi")
    app = apps("debian-openmpi")
    root = tmp_path / "host"
    shutil.copytree(site.root, root, symlinks=True)
    _age(root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    host = HostFacts(architecture="x86_64", glibc="2.36")
    image = app.image()
    request = Request(launcher=("srun",), image=image.source, command=("app",))
    walked = resolve(site.profile, request, host, image, root=root, reader=read_elf_file)
    miss = resolve(site.profile, request, host, image, root=root)
    assert reads
    del reads[:]
    hit = resolve(site.profile, request, host, image, root=root)
    assert reads == []
    assert hit == miss == walked
    assert hit.binds


@pytest.fixture
def mpi_reads(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """Every ELF file host_mpi reads from now on."""
    from hpcrun.resolve import resolver

    return _count_reads(monkeypatch, resolver, "_read_elf_file")


@pytest.mark.parametrize("scan", [False, True])
def test_host_mpi_is_remembered_until_a_library_changes(
        tree: Path, tmp_path: Path, mpi_reads: List[str], scan: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hpcrun.profiles.model import Mpi
    from hpcrun.resolve.resolver import host_mpi

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    copy_host_file(tree, f"{HOST_LIBDIR}/libmpichfort.so.12", dest="/opt/a/lib/libmpichfort.so.12")
    # scan: no version in the profile, so the library's strings are read (classify_mpi)
    mpi = Mpi(family="mpich", version="" if scan else "4.0.2",
              implementation="" if scan else "MPICH", libraries=tuple(ROOTS),
              library_dirs=LIBRARY_PATH, fortran=("libmpichfort.so.12", "libmpifort.so.12"))
    _age(tree)
    walked = host_mpi(mpi, tree, read_elf_file)
    assert walked.diagnostics  # libmpifort.so.12 is named but absent
    assert host_mpi(mpi, tree) == walked
    assert mpi_reads
    del mpi_reads[:]
    assert host_mpi(mpi, tree) == walked
    assert mpi_reads == []
    if scan:
        assert walked.version == "4.0.2"
    shutil.copyfile(os.path.realpath(f"{HOST_LIBDIR}/libmpichfort.so.12"),
                    tree / "opt/a/lib/libmpifort.so.12")  # a file of its own: a new library
    changed = host_mpi(mpi, tree)
    assert mpi_reads
    assert changed == host_mpi(mpi, tree, read_elf_file) != walked

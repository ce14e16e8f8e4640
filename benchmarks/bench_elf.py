"""ELF reading speed: hpcrun.elf.reader against pyelftools on the host's libraries.

    python benchmarks/bench_elf.py [DIR]      (default /usr/lib/x86_64-linux-gnu)

Prints the import cost of each, the time per library for the dynamic-linking facts
(ElfInfo), for the dynamic symbol table, and for MPI classification of the MPI libraries.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from typing import List


def _elf_files(directory: str) -> List[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.so*"))):
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as stream:
                if stream.read(4) == b"\x7fELF":
                    out.append(path)
    return out


def _import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout) * 1000


def main() -> None:
    directory = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/x86_64-linux-gnu"
    files = _elf_files(directory)
    print(f"{len(files)} ELF libraries in {directory}")
    print(f"import hpcrun.elf.reader:        {_import_ms('hpcrun.elf.reader'):7.1f} ms")
    print(f"import elftools.elf.elffile:     {_import_ms('elftools.elf.elffile'):7.1f} ms")

    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
    from elftools.elf.sections import SymbolTableSection

    from hpcrun.elf.mpi import classify_mpi, mpi_name
    from hpcrun.elf.reader import dynamic_symbols, read_elf_file

    def pyelftools_facts(path: str) -> None:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    list(section.iter_tags())
                elif isinstance(section, (GNUVerDefSection, GNUVerNeedSection)):
                    for _v, aux in section.iter_versions():
                        list(aux)

    def pyelftools_symbols(path: str) -> None:
        with open(path, "rb") as stream:
            for section in ELFFile(stream).iter_sections():
                if isinstance(section, SymbolTableSection) and section.name == ".dynsym":
                    for symbol in section.iter_symbols():
                        _ = symbol.name, symbol["st_shndx"]

    def ours_symbols(path: str) -> None:
        with open(path, "rb") as stream:
            dynamic_symbols(stream, path)

    def timed(label: str, fn, paths: List[str]) -> None:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        for path in paths:
            fn(path)
        per = (time.perf_counter() - start) / max(1, len(paths)) * 1000
        print(f"{label:32s} {per:7.3f} ms/library ({len(paths)} libraries)")

    timed("ElfInfo, hpcrun reader", read_elf_file, files)
    timed("same facts, pyelftools", pyelftools_facts, files)
    sample = files[:: max(1, len(files) // 100)]
    timed(".dynsym, hpcrun reader", ours_symbols, sample)
    timed(".dynsym, pyelftools", pyelftools_symbols, sample)
    mpi = [p for p in files if mpi_name(os.path.basename(p))]

    def classify(path: str) -> None:
        classify_mpi(os.path.basename(path), path, read_elf_file(path), lambda: open(path, "rb"))

    timed("classify_mpi (MPI libraries)", classify, mpi)


if __name__ == "__main__":
    main()

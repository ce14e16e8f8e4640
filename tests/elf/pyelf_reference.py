"""The same facts as hpcrun.elf.reader, computed with pyelftools: the cross-check oracle."""

from __future__ import annotations

from typing import Dict, FrozenSet, List, Tuple

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerDefSection, GNUVerNeedSection
from elftools.elf.sections import SymbolTableSection


def reference_facts(path: str) -> Dict[str, object]:
    """soname, needed, rpath, runpath, interpreter, version defs and needs via pyelftools."""
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        out: Dict[str, object] = {
            "elf_class": elf.elfclass,
            "machine": elf["e_machine"],
            "elf_type": elf["e_type"],
            "soname": "",
            "needed": (),
            "rpath": (),
            "runpath": (),
            "interpreter": "",
            "version_defs": (),
            "version_needs": (),
        }
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_INTERP":
                out["interpreter"] = segment.get_interp_name()
        needed: List[str] = []
        rpath: List[str] = []
        runpath: List[str] = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_SONAME" and not out["soname"]:
                        out["soname"] = tag.soname
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath.extend(p for p in tag.rpath.split(":") if p)
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath.extend(p for p in tag.runpath.split(":") if p)
            elif isinstance(section, GNUVerDefSection):
                names: List[str] = []
                for verdef, auxiter in section.iter_versions():
                    if verdef["vd_flags"] & 1:
                        continue
                    name = next(iter(auxiter)).name
                    if name not in names:
                        names.append(name)
                out["version_defs"] = tuple(names)
            elif isinstance(section, GNUVerNeedSection):
                needs: List[Tuple[str, Tuple[str, ...]]] = []
                for verneed, auxiter in section.iter_versions():
                    needs.append((verneed.name, tuple(aux.name for aux in auxiter)))
                out["version_needs"] = tuple(needs)
        out["needed"] = tuple(needed)
        out["rpath"] = tuple(rpath)
        out["runpath"] = tuple(runpath)
        return out


def reference_symbols(path: str) -> Tuple[FrozenSet[str], FrozenSet[str]]:
    """(defined, undefined) global/weak names of .dynsym via pyelftools."""
    defined, undefined = set(), set()
    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        for section in elf.iter_sections():
            if isinstance(section, SymbolTableSection) and section["sh_type"] == "SHT_DYNSYM":
                for symbol in section.iter_symbols():
                    if not symbol.name or symbol["st_info"]["bind"] == "STB_LOCAL":
                        continue
                    if symbol["st_shndx"] == "SHN_UNDEF":
                        undefined.add(symbol.name)
                    else:
                        defined.add(symbol.name)
    return frozenset(defined), frozenset(undefined)

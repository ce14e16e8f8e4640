"""A stand-in for ``hpcrun inspect --json IMAGE`` used by bench_inspect.py.

Does what inspection does on the hot path: open the squashfs image lazily, read
``/etc/ld.so.cache``, find the ``libmpi*`` libraries it lists, resolve their symlinks inside
the image and read each one's ELF header and dynamic section through ``fs.Tree.open``.  The
JSON result is cached under ``$XDG_CACHE_HOME/hpcrun-bench/`` keyed by the image's path,
size and mtime, so a second run measures the warm path.

    python benchmarks/inspect_probe.py IMAGE
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import sys
from typing import TYPE_CHECKING, BinaryIO, Dict, List

if TYPE_CHECKING:
    from hpcrun.image.fs import Tree

LIBMPI = re.compile(rb"(/[\x21-\x7e]*?/libmpi[\w.+-]*\.so[\w.]*)\x00")


def _cache_file(image: str) -> str:
    st = os.stat(image)
    key = f"{os.path.realpath(image)}|{st.st_size}|{st.st_mtime_ns}"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    name = hashlib.sha256(key.encode()).hexdigest()[:32] + ".json"
    return os.path.join(base, "hpcrun-bench", name)


def _elf_facts(tree: Tree, path: str) -> Dict[str, object]:
    """soname and DT_NEEDED of one library, with hpcrun's ELF reader when it is there."""
    with tree.open(path) as stream:
        try:
            from hpcrun.elf.reader import read_elf
        except ImportError:
            return _minimal_elf(stream)
        info = read_elf(stream, path)
        return {"soname": info.soname, "needed": list(info.needed)}


def _minimal_elf(stream: BinaryIO) -> Dict[str, object]:
    head = stream.read(64)
    (phoff,) = struct.unpack_from("<Q", head, 32)
    phentsize, phnum = struct.unpack_from("<HH", head, 54)
    stream.seek(phoff)
    table = stream.read(phentsize * phnum)
    for i in range(phnum):
        kind, _flags, offset, _v, _p, filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if kind == 2:  # PT_DYNAMIC
            stream.seek(offset)
            return {"dynamic_bytes": len(stream.read(filesz))}
    return {}


def inspect(image: str) -> Dict[str, object]:
    """The probe's facts about ``image``."""
    from hpcrun.image.fs import Tree
    from hpcrun.image.squashfs import SquashfsBackend

    tree = Tree(SquashfsBackend(image))
    cache = tree.read("/etc/ld.so.cache")
    libraries: List[Dict[str, object]] = []
    for raw in sorted(set(LIBMPI.findall(cache))):
        path = raw.decode()
        real, node = tree.resolve(path)
        if node is None or node.kind != "file":
            continue
        entry: Dict[str, object] = {"path": path, "real_path": real}
        entry.update(_elf_facts(tree, real))
        libraries.append(entry)
    return {"image": image, "mpi_libraries": libraries}


def main() -> None:
    """Print the (cached) facts of the image given on the command line as JSON."""
    image = sys.argv[1]
    cached = _cache_file(image)
    try:
        with open(cached) as handle:
            sys.stdout.write(handle.read())
            return
    except OSError:
        pass
    text = json.dumps(inspect(image), indent=1) + "\n"
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with open(cached + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(cached + ".tmp", cached)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()

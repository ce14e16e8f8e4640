"""A read-only file tree inside an image, and path resolution as the container would see it.

Each image format (squashfs, ext3, sandbox directory) implements the small
:class:`Backend` protocol: the root node, a child lookup, readlink, reads.  Path
resolution lives here once: symbolic links are followed in every position, absolute
targets resolve against the *image* root (never the host), ``..`` stops at the root,
and loops raise :class:`~hpcrun.errors.ImageError`.  :class:`Overlay` stacks trees so
that upper layers shadow lower ones (SIF overlay partitions).
"""

from __future__ import annotations

import io

from hpcrun.errors import (
    HINT_INSIDE,
    ImageError,
)
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Dict, List, Optional, Protocol, Sequence, Tuple

MAX_SYMLINKS = 40  # Linux's limit (ELOOP)
_RESOLVED = 4096  # resolved paths a Tree keeps

DIR = "dir"
FILE = "file"
SYMLINK = "symlink"
OTHER = "other"  # devices, fifos, sockets (and overlay whiteouts)


@record
class Node:
    """An inode: ``kind`` one of dir/file/symlink/other; ``ref`` is the backend's handle."""

    kind: str
    size: int = 0
    mode: int = 0
    mtime: int = 0
    ref: object = None
    whiteout: bool = False  # an overlay whiteout (char device 0:0): the name is deleted


if TYPE_CHECKING:

    class Backend(Protocol):
        """What an image format implements.  Names are single path components."""

        name: str  # for messages: the image file and partition

        def root(self) -> Node: ...

        def child(self, directory: Node, name: str) -> Optional[Node]: ...

        def readlink(self, node: Node) -> str: ...

        def read(self, node: Node, offset: int = 0, size: int = -1) -> bytes: ...

        def listdir(self, directory: Node) -> List[str]: ...

else:
    Backend = object  # a structural type: only type checkers look inside


class NodeReader(io.RawIOBase):
    """A seekable file object over a node, reading lazily through ``Backend.read``.

    Lets ELF parsers look at a few headers of a 30 MB library without decompressing it.
    """

    def __init__(self, backend: Backend, node: Node) -> None:
        super().__init__()
        self._backend = backend
        self._node = node
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._node.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._node.size - self._pos)
        data = self._backend.read(self._node, self._pos, size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def split(path: str) -> List[str]:
    """Components of a path, without empty and ``.`` parts."""
    return [p for p in path.split("/") if p and p != "."]


class Tree:
    """Path-level access to one backend (or an :class:`Overlay`)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        # Resolved paths: inspection asks about the same library paths several times
        # (exists, open, realpath); images are read-only while a Tree reads them.
        self._resolved: Dict[Tuple[str, bool], Tuple[str, Optional[Node]]] = {}

    @property
    def name(self) -> str:
        return self.backend.name

    def resolve(self, path: str, follow_final: bool = True) -> Tuple[str, Optional[Node]]:
        """Resolve ``path`` inside the image: the canonical path and its node (None if absent).

        Every symbolic link is followed, the last one only when ``follow_final``.  Absolute
        link targets restart at the image root.  A missing component gives ``(path, None)``.
        """
        key = (path, follow_final)
        hit = self._resolved.get(key)
        if hit is None:
            hit = self._resolve(path, follow_final)
            if len(self._resolved) >= _RESOLVED:
                self._resolved.clear()
            self._resolved[key] = hit
        return hit

    def _resolve(self, path: str, follow_final: bool) -> Tuple[str, Optional[Node]]:
        todo = split(path)
        todo.reverse()  # a stack of components still to walk
        stack: List[Tuple[str, Node]] = []  # resolved (name, node) from the root
        root = self.backend.root()
        hops = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if stack:
                    stack.pop()
                continue
            parent = stack[-1][1] if stack else root
            if parent.kind != DIR:
                return "/" + "/".join([n for n, _ in stack] + [name] + todo[::-1]), None
            node = self.backend.child(parent, name)
            if node is None or node.whiteout:
                return "/" + "/".join([n for n, _ in stack] + [name] + todo[::-1]), None
            if node.kind == SYMLINK and (todo or follow_final):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise ImageError(
                        f"{self.name}: too many levels of symbolic links resolving {path}",
                        hint="the image contains a symbolic link loop; fix the image",
                    )
                target = self.backend.readlink(node)
                if target.startswith("/"):
                    stack = []
                parts = split(target)
                todo.extend(reversed(parts))
                continue
            stack.append((name, node))
        canonical = "/" + "/".join(n for n, _ in stack)
        return canonical, (stack[-1][1] if stack else root)

    def lookup(self, path: str, follow: bool = True) -> Optional[Node]:
        """The node at ``path`` (links followed), or None."""
        return self.resolve(path, follow_final=follow)[1]

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists in the image (links followed)."""
        return self.lookup(path) is not None

    def realpath(self, path: str) -> str:
        """The canonical path of ``path`` inside the image (like ``realpath -m``)."""
        return self.resolve(path)[0]

    def read(self, path: str, offset: int = 0, size: int = -1) -> bytes:
        """Bytes of a regular file; ImageError when it is missing or not a file."""
        node = self._file(path)
        return self.backend.read(node, offset, size)

    def open(self, path: str) -> BinaryIO:
        """A lazy seekable reader of a regular file."""
        node = self._file(path)
        return io.BufferedReader(NodeReader(self.backend, node), buffer_size=16384)

    def readlink(self, path: str) -> str:
        """The target of the symbolic link at ``path`` (intermediate links followed)."""
        node = self.lookup(path, follow=False)
        if node is None or node.kind != SYMLINK:
            raise ImageError(f"{self.name}: {path} is not a symbolic link", hint=HINT_INSIDE)
        return self.backend.readlink(node)

    def listdir(self, path: str) -> List[str]:
        """Names in a directory (sorted); ImageError when it is not one."""
        node = self.lookup(path)
        if node is None or node.kind != DIR:
            raise ImageError(f"{self.name}: {path} is not a directory in the image",
                             hint=HINT_INSIDE)
        return sorted(self.backend.listdir(node))

    def _file(self, path: str) -> Node:
        node = self.lookup(path)
        if node is None:
            raise ImageError(f"{self.name}: {path} does not exist in the image", hint=HINT_INSIDE)
        if node.kind != FILE:
            raise ImageError(f"{self.name}: {path} is not a regular file in the image",
                             hint=HINT_INSIDE)
        return node


@record
class _Layered:
    """A directory seen through several layers: ``nodes[i]`` belongs to ``layers[i]``."""

    nodes: Tuple[Tuple[int, Node], ...]
    opaque: bool = False


class Overlay:
    """Backends stacked upper-first: a name in an upper layer shadows the lower ones.

    Whiteouts (char device 0:0, reported by backends as ``Node.whiteout``) delete a name.
    """

    def __init__(self, layers: Sequence[Backend]) -> None:
        if not layers:
            raise ValueError("an overlay needs at least one layer")
        self.layers = list(layers)
        self.name = " + ".join(layer.name for layer in self.layers)

    def _wrap(self, entries: List[Tuple[int, Node]]) -> Node:
        top = entries[0][1]
        if top.kind != DIR:
            return Node(top.kind, top.size, top.mode, top.mtime, (entries[0][0], top), top.whiteout)
        dirs = tuple((i, n) for i, n in entries if n.kind == DIR)
        return Node(DIR, top.size, top.mode, top.mtime, _Layered(dirs))

    def root(self) -> Node:
        return self._wrap([(i, layer.root()) for i, layer in enumerate(self.layers)])

    def child(self, directory: Node, name: str) -> Optional[Node]:
        assert isinstance(directory.ref, _Layered)
        found: List[Tuple[int, Node]] = []
        for i, node in directory.ref.nodes:
            sub = self.layers[i].child(node, name)
            if sub is None:
                continue
            if sub.whiteout and not found:
                return None
            found.append((i, sub))
            if sub.kind != DIR:
                break  # a non-directory hides everything below it
        if not found:
            return None
        if found[0][1].kind != DIR:
            return self._wrap(found[:1])
        return self._wrap([f for f in found if f[1].kind == DIR])

    def _leaf(self, node: Node) -> Tuple[Backend, Node]:
        ref: Tuple[int, Node] = node.ref  # type: ignore[assignment]  # (layer index, layer node)
        index, inner = ref
        return self.layers[index], inner

    def readlink(self, node: Node) -> str:
        backend, inner = self._leaf(node)
        return backend.readlink(inner)

    def read(self, node: Node, offset: int = 0, size: int = -1) -> bytes:
        backend, inner = self._leaf(node)
        return backend.read(inner, offset, size)

    def listdir(self, directory: Node) -> List[str]:
        assert isinstance(directory.ref, _Layered)
        names: dict = {}
        for i, node in directory.ref.nodes:
            for name in self.layers[i].listdir(node):
                if name not in names:
                    sub = self.layers[i].child(node, name)
                    names[name] = bool(sub is not None and sub.whiteout)
        return [n for n, gone in names.items() if not gone]

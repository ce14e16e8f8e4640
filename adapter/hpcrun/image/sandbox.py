"""A sandbox image (an unpacked root file system on the host, e.g. a CVMFS tree) as a Backend.

Symbolic links are never followed on the host: ``/lib -> usr/lib`` inside the sandbox must
resolve inside the sandbox, which :class:`hpcrun.image.fs.Tree` does against the image root.
Every ``lstat`` is remembered (path -> mtime) so that a cache key can cover exactly what
was looked at (see :meth:`SandboxBackend.identity`).
"""

from __future__ import annotations

import os
import stat

from hpcrun.errors import (
    HINT_ACCESS,
    ImageError,
)
from hpcrun.image.fs import DIR, FILE, OTHER, SYMLINK, Node

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISREG(mode):
        return FILE
    if stat.S_ISLNK(mode):
        return SYMLINK
    return OTHER


class SandboxBackend:
    """The directory tree at ``root_dir`` seen as an image root (node ref = host path)."""

    def __init__(self, root_dir: str, name: str = "") -> None:
        self.root_dir = os.path.abspath(root_dir)
        self.name = name or self.root_dir
        self._seen: Dict[str, int] = {}

    def _node(self, host_path: str) -> Optional[Node]:
        try:
            st = os.lstat(host_path)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as exc:
            raise ImageError(
                f"{self.name}: cannot stat {self._inner(host_path)}: {exc.strerror}",
                hint="check the permissions of the sandbox directory",
            ) from exc
        self._seen[host_path] = st.st_mtime_ns
        whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        return Node(
            _kind(st.st_mode),
            st.st_size,
            st.st_mode,
            int(st.st_mtime),
            host_path,
            whiteout,
        )

    def _inner(self, host_path: str) -> str:
        rel = os.path.relpath(host_path, self.root_dir)
        return "/" if rel == "." else "/" + rel

    def root(self) -> Node:
        """The sandbox root directory; ImageError if it is not a directory."""
        node = self._node(self.root_dir)
        if node is None or node.kind != DIR:
            raise ImageError(f"{self.root_dir}: not a directory", hint="check the image path")
        return node

    def child(self, directory: Node, name: str) -> Optional[Node]:
        """The entry ``name`` of ``directory`` (never following a host symlink)."""
        if "/" in name or name in (".", ".."):
            return None
        return self._node(os.path.join(str(directory.ref), name))

    def readlink(self, node: Node) -> str:
        """The link's target text, as stored (resolved later against the image root)."""
        try:
            return os.readlink(str(node.ref))
        except OSError as exc:
            raise ImageError(
                f"{self.name}: cannot read link {self._inner(str(node.ref))}: {exc.strerror}",
                                                             hint=HINT_ACCESS
            ) from exc

    def read(self, node: Node, offset: int = 0, size: int = -1) -> bytes:
        """Bytes of a regular file, read with pread from an O_NOFOLLOW descriptor."""
        if size < 0:
            size = max(0, node.size - offset)
        # O_NOFOLLOW: never the host's link target; O_NONBLOCK: a fifo must not hang us.
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        flags |= getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(str(node.ref), flags)
        except OSError as exc:
            raise ImageError(
                f"{self.name}: cannot read {self._inner(str(node.ref))}: {exc.strerror}",
                hint="check the permissions of the sandbox directory",
            ) from exc
        try:
            chunks: List[bytes] = []
            while size > 0:
                chunk = os.pread(fd, min(size, 1 << 24), offset)
                if not chunk:
                    break
                chunks.append(chunk)
                offset += len(chunk)
                size -= len(chunk)
            return b"".join(chunks)
        except OSError as exc:
            raise ImageError(
                f"{self.name}: cannot read {self._inner(str(node.ref))}: {exc.strerror}",
                                                        hint=HINT_ACCESS
            ) from exc
        finally:
            os.close(fd)

    def listdir(self, directory: Node) -> List[str]:
        """Names in a directory of the sandbox."""
        try:
            return os.listdir(str(directory.ref))
        except OSError as exc:
            raise ImageError(
                f"{self.name}: cannot list {self._inner(str(directory.ref))}: {exc.strerror}",
                                                        hint=HINT_ACCESS
            ) from exc

    def seen(self) -> Tuple[Tuple[str, int], ...]:
        """(image path, mtime in ns) of every entry looked at so far, sorted."""
        return tuple(sorted((self._inner(p), m) for p, m in self._seen.items()))

    def identity(self) -> Tuple[Tuple[str, int], ...]:
        """The *current* (path, mtime ns, -1 if gone) of everything looked at so far.

        Compare it with a stored identity to know whether facts computed from this sandbox
        are still valid; re-stat'ing is cheap compared with re-reading ELF files.
        """
        out: List[Tuple[str, int]] = []
        for host_path in sorted(self._seen):
            try:
                mtime = os.lstat(host_path).st_mtime_ns
            except OSError:
                mtime = -1
            out.append((self._inner(host_path), mtime))
        return tuple(out)

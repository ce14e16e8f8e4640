"""Open any container image as a :class:`hpcrun.image.fs.Tree`, without starting a container.

``open_image(image)`` detects the kind by content (SIF magic at offset 32, ``hsqs`` at 0 for
a bare squashfs, the ext2/3/4 magic 0xEF53 at byte 1080, a directory for a sandbox) and
returns an :class:`OpenedImage`: the tree, an identity for the facts cache, the image's
environment and labels read statically, and its architecture when the image records one.

Caching facts: :func:`image_identity` gives the same ``identity`` as ``open_image`` without
opening the file system (a cheap cache key).  A sandbox's identity covers only its top
directory: store :meth:`OpenedImage.dependencies` with the facts and check them with
:func:`dependencies_unchanged` on a hit.

Registry URIs (``docker://``, ``oras://``, ``library://``, ``shub://``) are looked up in the
runtime's local cache (:func:`find_cached_sif`); when no cached SIF can be found,
:class:`UncheckedImage` is raised: the caller warns that the image checks are skipped and
launches anyway.
"""

from __future__ import annotations

import os
import stat

from hpcrun.errors import EncryptedImageError, ImageError, UsageError
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Mapping, Optional, Pattern, Sequence, Tuple

    # The file-system layer is imported by the functions that open one: a cache hit
    # needs only image_identity (a stat and, for a SIF, its header).
    from hpcrun.image import sif as sifmod
    from hpcrun.image.fs import Backend, Node, Tree

URI_SCHEMES = ("docker://", "oras://", "library://", "shub://", "docker-daemon:", "http://",
               "https://", "oci://", "oci-archive:", "docker-archive:")
EXT_MAGIC_OFFSET = 1080
SQUASHFS_MAGIC = b"hsqs"
# hpcrun.image.sif.SIF_MAGIC at MAGIC_OFFSET, repeated so that telling the kind needs no import.
SIF_MAGIC = b"SIF_MAGIC\x00"
SIF_MAGIC_OFFSET = 32
ENV_DIR = "/.singularity.d/env"
LABELS_FILE = "/.singularity.d/labels.json"
# A directory is taken for a root file system when it holds at least one of these.
ROOTFS_MARKERS = ("usr", "bin", "etc", "lib", "lib64", "sbin", "opt", ".singularity.d")
MAX_METADATA = 1 << 20  # env scripts and labels bigger than this are not metadata


class UncheckedImage(ImageError):
    """The image is a registry URI with no local copy: it cannot be inspected.

    Not a failure of the launch: the caller should warn that the image checks are skipped
    (``message`` says why) and go on.
    """


@record
class OpenedImage:
    """An image opened for reading.

    ``kind``: sif, squashfs, ext3 or sandbox.  ``identity``: a string that changes when the
    image file changes (SIF UUID + partitions + size/mtime/inode; bare images size/mtime/inode;
    sandboxes their path and root mtime; see :meth:`dependencies` for what a sandbox read).
    ``architecture``: ``uname -m`` spelling (x86_64, aarch64 ...) when the image records one
    (SIF), else ''.  ``environment``/``labels``: (name, value) pairs in definition order.
    """

    source: str  # what the user gave (a path or a URI)
    path: str  # the file or directory actually opened
    kind: str
    tree: Tree
    identity: str
    environment: Tuple[Tuple[str, str], ...] = ()
    labels: Tuple[Tuple[str, str], ...] = ()
    architecture: str = ""
    sif: Optional[sifmod.SifImage] = None
    warnings: Tuple[str, ...] = ()

    def env(self, name: str, default: str = "") -> str:
        """The image's value of an environment variable (the last definition wins)."""
        for key, value in reversed(self.environment):
            if key == name:
                return value
        return default

    def dependencies(self) -> Tuple[Tuple[str, int], ...]:
        """For a sandbox: (image path, mtime ns) of every entry looked at so far.

        Store it beside facts computed from the sandbox; :func:`dependencies_unchanged`
        tells later whether they still hold.  Empty for image files (``identity`` covers them).
        """
        backend = self.tree.backend
        seen = getattr(backend, "seen", None)
        return seen() if callable(seen) else ()


def dependencies_unchanged(root_dir: str, deps: Sequence[Sequence[object]]) -> bool:
    """Whether every (image path, mtime ns) in ``deps`` still has that mtime under ``root_dir``."""
    root = os.path.abspath(root_dir)
    for inner, mtime in deps:
        host = os.path.join(root, str(inner).lstrip("/")) if inner != "/" else root
        try:
            if os.lstat(host).st_mtime_ns != mtime:
                return False
        except OSError:
            if mtime != -1:
                return False
    return True


def is_uri(image: str) -> bool:
    """Whether ``image`` names a registry/remote image rather than a local path."""
    return image.startswith(URI_SCHEMES)


def _cache_roots(environ: Mapping[str, str]) -> List[str]:
    """The runtime cache roots (``<parent>/cache``) to search, Apptainer first."""
    home = environ.get("HOME") or os.path.expanduser("~")
    roots: List[str] = []
    for var, default in (
        ("APPTAINER_CACHEDIR", os.path.join(home, ".apptainer")),
        ("SINGULARITY_CACHEDIR", os.path.join(home, ".singularity")),
    ):
        parent = environ.get(var) or default
        roots.append(os.path.join(parent, "cache"))
    return roots


_DIGEST = r"sha256[:.]([0-9a-f]{64})"


def _rx(pattern: str, dotall: bool = False) -> Pattern[str]:
    """``pattern`` compiled at first use (``re`` keeps it): a cache hit imports no ``re``."""
    import re

    return re.compile(pattern, re.S if dotall else 0)


def find_cached_sif(uri: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """A SIF file that the runtime's cache holds for ``uri``, or None.

    Apptainer/Singularity keep pulled images as single files ``<cache>/<type>/<hash>`` (types
    ``oci-tmp`` for docker://, ``library``, ``oras``, ``shub``; the cache is
    ``$APPTAINER_CACHEDIR/cache`` or ``~/.apptainer/cache``, and the same under SINGULARITY).
    The hash is a digest the runtime gets from the registry, so offline it can only be
    matched when the URI pins one (``docker://x@sha256:...``, ``library://x:sha256.<hex>``).
    Without a pinned digest this returns None: we never guess which cached image is meant.
    """
    env = os.environ if environ is None else environ
    match = _rx(_DIGEST).search(uri)
    if match is None:
        return None
    hexdigest = match.group(1)
    scheme = uri.split(":", 1)[0]
    types = {
        "docker": ("oci-tmp",),
        "oras": ("oras",),
        "library": ("library",),
        "shub": ("shub",),
    }.get(scheme, ("oci-tmp", "library", "oras", "shub"))
    names = (hexdigest, "sha256:" + hexdigest, "sha256." + hexdigest)
    for root in _cache_roots(env):
        for kind in types:
            for name in names:
                candidate = os.path.join(root, kind, name)
                if os.path.isfile(candidate):
                    return candidate
    return None


def _stat_identity(kind: str, st: os.stat_result) -> str:
    return f"{kind}:size={st.st_size}:mtime={st.st_mtime_ns}:ino={st.st_ino}:dev={st.st_dev}"


def _squashfs(path: str, offset: int = 0, size: int = -1, name: str = "") -> Backend:
    from hpcrun.image.squashfs import SquashfsBackend  # lazy: codecs are heavy

    return SquashfsBackend(path, offset=offset, size=size, name=name)


def _ext3(path: str, offset: int = 0, size: int = -1, name: str = "") -> Backend:
    from hpcrun.image.ext3 import Ext3Backend

    return Ext3Backend(path, offset=offset, size=size, name=name)


def _partition_backend(image: sifmod.SifImage, d: sifmod.SifDescriptor) -> Backend:
    from hpcrun.image import sif as sifmod

    part = d.partition
    assert part is not None
    name = f"{image.path} (partition {d.id})"
    if part.encrypted:
        raise EncryptedImageError(
            f"{image.path}: cannot inspect an encrypted image (partition {d.id} is "
            f"{part.fstype_name})",
            hint="launch with --no-check to skip the image checks",
        )
    if part.fstype == sifmod.FS_SQUASHFS:
        return _squashfs(image.path, d.offset, d.size, name)
    if part.fstype == sifmod.FS_EXT3:
        return _ext3(image.path, d.offset, d.size, name)
    raise ImageError(
        f"{image.path}: partition {d.id} holds a {part.fstype_name} file system, which hpcrun "
        "cannot read",
        hint="launch with --no-check to skip the image checks",
    )


class _Subtree:
    """A backend seen from one of its directories (the ``upper`` of an overlay partition)."""

    def __init__(self, inner: Backend, top: Node, name: str) -> None:
        self.inner = inner
        self.top = top
        self.name = name

    def root(self) -> Node:
        return self.top

    def child(self, directory: Node, name: str) -> Optional[Node]:
        return self.inner.child(directory, name)

    def readlink(self, node: Node) -> str:
        return self.inner.readlink(node)

    def read(self, node: Node, offset: int = 0, size: int = -1) -> bytes:
        return self.inner.read(node, offset, size)

    def listdir(self, directory: Node) -> List[str]:
        return self.inner.listdir(directory)


def _overlay_upper(backend: Backend) -> Backend:
    """The layer an overlay partition contributes.

    ``apptainer overlay create`` writes ``/upper`` (the layer) and ``/work`` (overlayfs
    scratch) into the ext3 file system; an overlay without them is used from its root.
    """
    from hpcrun.image.fs import DIR

    root = backend.root()
    upper = backend.child(root, "upper")
    work = backend.child(root, "work")
    if upper is not None and upper.kind == DIR and work is not None and work.kind == DIR:
        return _Subtree(backend, upper, backend.name + ":/upper")
    return backend


def _sif_identity(image: sifmod.SifImage, st: os.stat_result) -> str:
    primary = image.primary_partition()
    used = (*image.overlay_partitions(), *((primary,) if primary is not None else ()))
    parts = ",".join(f"{d.id}@{d.offset}+{d.size}" for d in used)
    return f"sif:{image.header.uuid}:{parts}:" + _stat_identity("file", st)


# The SIF layout bits _quick_sif_identity reads (see hpcrun.image.sif for the whole format).
_SIF_HEADER = "<32s10s3s3s16s8q"  # launch script, magic, version, arch, UUID, 8 int64s
_SIF_HEADER_SIZE = 128
_SIF_DESCRIPTOR = "<i?III2q"  # datatype, used, id, groupid, link, offset, size
_SIF_DESCRIPTOR_SIZE = 585
_SIF_EXTRA_AT = 201  # the type-specific extra; for a partition: fstype, parttype (int32)


def _quick_sif_identity(path: str, st: os.stat_result) -> Optional[str]:
    """What ``_sif_identity(read_sif(path), st)`` returns, from the raw header and descriptor
    table, without building the SIF objects (the cache-hit path of every launch).

    None when anything is unusual (another version, a descriptor outside the file, no
    primary partition): the full reader then decides and names the problem.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = os.pread(f.fileno(), _SIF_HEADER_SIZE, 0)
            if len(head) < _SIF_HEADER_SIZE:
                return None
            fields = struct.unpack_from(_SIF_HEADER, head)
            total, table_at = fields[8], fields[9]
            if (fields[1] != SIF_MAGIC or fields[2].split(b"\0", 1)[0] != b"01" or total < 0
                    or total > 1 << 16 or table_at < 0
                    or table_at + total * _SIF_DESCRIPTOR_SIZE > st.st_size):
                return None
            table = os.pread(f.fileno(), total * _SIF_DESCRIPTOR_SIZE, table_at)
    except OSError:
        return None
    if len(table) != total * _SIF_DESCRIPTOR_SIZE:
        return None
    partitions: List[Tuple[int, int, int, int, int]] = []  # (id, group, parttype, offset, size)
    for at in range(0, len(table), _SIF_DESCRIPTOR_SIZE):
        if not table[at + 4]:  # a free slot
            continue
        datatype, _used, oid, groupid, _link, offset, size = struct.unpack_from(
            _SIF_DESCRIPTOR, table, at)
        if offset < 0 or size < 0 or offset + size > st.st_size:
            return None
        if datatype == 0x4004:  # a partition
            parttype = struct.unpack_from("<i", table, at + _SIF_EXTRA_AT + 4)[0]
            partitions.append((oid, groupid & 0x0FFFFFFF, parttype, offset, size))
    primary = next((p for p in partitions if p[2] == 2), None)
    if primary is None:
        return None
    overlays = sorted((p for p in partitions if p[2] == 4 and p[1] == primary[1]),
                      key=lambda p: p[0], reverse=True)
    parts = ",".join(f"{p[0]}@{p[3]}+{p[4]}" for p in (*overlays, primary))
    raw_uuid = fields[4].hex()
    uuid = (f"{raw_uuid[:8]}-{raw_uuid[8:12]}-{raw_uuid[12:16]}-{raw_uuid[16:20]}-"
            f"{raw_uuid[20:32]}")
    return f"sif:{uuid}:{parts}:" + _stat_identity("file", st)


def _open_sif(path: str, st: os.stat_result) -> Tuple[Tree, str, sifmod.SifImage]:
    from hpcrun.image import sif as sifmod
    from hpcrun.image.fs import Overlay, Tree

    image = sifmod.read_sif(path)
    primary = image.primary_partition()
    if primary is None:
        raise ImageError(
            f"{path}: the SIF file has no primary system partition (no container file system)",
            hint="rebuild the image with apptainer build",
        )
    overlays = image.overlay_partitions()
    layers = [_overlay_upper(_partition_backend(image, d)) for d in overlays]
    layers.append(_partition_backend(image, primary))
    backend: Backend = layers[0] if len(layers) == 1 else Overlay(layers)
    return Tree(backend), _sif_identity(image, st), image


def _check_rootfs(path: str) -> None:
    try:
        names = set(os.listdir(path))
    except OSError as exc:
        raise ImageError(
            f"{path}: cannot list the sandbox directory: {exc.strerror}",
            hint="check the path and its permissions",
        ) from exc
    if not names.intersection(ROOTFS_MARKERS):
        raise ImageError(
            f"{path}: the directory holds no container root file system (no usr, bin, etc, "
            "lib or .singularity.d)",
            hint="give the image file, or the top directory of an unpacked (sandbox) image",
        )


def _locate(image: str, environ: Optional[Mapping[str, str]]) -> Tuple[str, os.stat_result]:
    """The local path of ``image`` (a URI goes through the runtime cache) and its stat."""
    if not image:
        raise UsageError("the image argument is empty",
                         hint="give the path of the image: a .sif file, a squashfs or ext3 "
                              "image, or a sandbox directory")
    if is_uri(image):
        cached = find_cached_sif(image, environ)
        if cached is None:
            registry = image.startswith(("docker://", "oras://", "library://", "shub://"))
            why = (
                "no local copy in the Apptainer/Singularity cache"
                if registry
                else "hpcrun does not read this kind of image source"
            )
            raise UncheckedImage(
                f"{image}: {why}; the image checks are skipped",
                hint=f"build a SIF first (apptainer pull/build image.sif {image}) and run it",
            )
        image = cached
    try:
        return image, os.stat(image)
    except FileNotFoundError as exc:
        raise ImageError(
            f"{image}: no such image file or directory", hint="check the image path"
        ) from exc
    except OSError as exc:
        raise ImageError(
            f"{image}: cannot access the image: {exc.strerror}",
            hint="check the path and its permissions",
        ) from exc
    except ValueError as exc:  # a NUL byte: no file system path can hold one
        raise ImageError(f"{image!r}: not a valid path ({exc})",
                         hint="check the image argument") from exc


def _detect(path: str, st: os.stat_result) -> str:
    """sif, squashfs, ext3 or sandbox, from the content; ImageError for anything else."""
    if stat.S_ISDIR(st.st_mode):
        _check_rootfs(path)
        return "sandbox"
    if not stat.S_ISREG(st.st_mode):  # a fifo would block open(), a device is no image
        raise ImageError(
            f"{path}: not a regular file or directory",
            hint="give a .sif file, a squashfs/ext3 image or a sandbox directory",
        )
    try:
        with open(path, "rb") as f:
            head = os.pread(f.fileno(), 2048, 0)
    except OSError as exc:
        raise ImageError(
            f"{path}: cannot read the image: {exc.strerror}",
            hint="check the path and its permissions",
        ) from exc
    if head[SIF_MAGIC_OFFSET : SIF_MAGIC_OFFSET + len(SIF_MAGIC)] == SIF_MAGIC:
        return "sif"
    if head[:4] == SQUASHFS_MAGIC:
        return "squashfs"
    if head[EXT_MAGIC_OFFSET : EXT_MAGIC_OFFSET + 2] == b"\x53\xef":
        return "ext3"
    raise ImageError(
        f"{path}: not a container image (neither SIF, squashfs, ext3 nor a directory)",
        hint="give a .sif file, a squashfs/ext3 image or a sandbox directory",
    )


def looks_like_image(word: str) -> bool:
    """Whether the command-line word ``word`` names a container image: a registry URI, an
    existing SIF, squashfs or ext3 file (by its magic), or a directory holding a root file
    system (``.singularity.d``, or ``etc`` with ``usr`` or ``bin``: stricter than
    :data:`ROOTFS_MARKERS`, because a working directory may hold a ``bin``).

    Used to split a launcher command line with options hpcrun does not know.  Never raises.
    """
    if is_uri(word):
        return True
    try:
        st = os.stat(word)
    except (OSError, ValueError):
        return False
    if stat.S_ISDIR(st.st_mode):
        try:
            names = set(os.listdir(word))
        except OSError:
            return False
        return ".singularity.d" in names or ("etc" in names and bool(names & {"usr", "bin"}))
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        _detect(word, st)
    except ImageError:
        return False
    return True


def _sandbox_identity(path: str, st: os.stat_result) -> str:
    return f"sandbox:{os.path.abspath(path)}:mtime={st.st_mtime_ns}:ino={st.st_ino}"


def image_identity(image: str, environ: Optional[Mapping[str, str]] = None) -> Tuple[str, str]:
    """(kind, identity) of ``image`` without opening its file system: a cheap cache key.

    The identity is the one :func:`open_image` gives.  For a sandbox it covers only the
    directory itself: check the stored :meth:`OpenedImage.dependencies` as well.
    """
    path, st = _locate(image, environ)
    kind = _detect(path, st)
    if kind == "sif":
        quick = _quick_sif_identity(path, st)
        if quick is not None:
            return kind, quick
        from hpcrun.image.sif import read_sif

        return kind, _sif_identity(read_sif(path), st)
    if kind == "sandbox":
        return kind, _sandbox_identity(path, st)
    return kind, _stat_identity(kind, st)


def open_image(image: str, environ: Optional[Mapping[str, str]] = None) -> OpenedImage:
    """Open ``image`` (a SIF, squashfs or ext3 file, a sandbox directory, or a registry URI).

    Raises :class:`UncheckedImage` for a URI with no cached copy, :class:`EncryptedImageError`
    for an encrypted SIF, :class:`ImageError` (naming the path) for anything unreadable.
    """
    from hpcrun.image.fs import Tree

    source = image
    image, st = _locate(image, environ)
    kind = _detect(image, st)
    sif_image: Optional[sifmod.SifImage] = None
    architecture = ""
    if kind == "sandbox":
        from hpcrun.image.sandbox import SandboxBackend

        tree = Tree(SandboxBackend(image))
        identity = _sandbox_identity(image, st)
    elif kind == "sif":
        tree, identity, sif_image = _open_sif(image, st)
        from hpcrun.image.sif import GOARCH_TO_MACHINE

        architecture = GOARCH_TO_MACHINE.get(sif_image.architecture, "")
    elif kind == "squashfs":
        tree = Tree(_squashfs(image, name=image))
        identity = _stat_identity(kind, st)
    else:
        tree = Tree(_ext3(image, name=image))
        identity = _stat_identity(kind, st)
    warnings: List[str] = []
    environment, labels = _metadata(tree, sif_image, warnings)
    return OpenedImage(
        source=source,
        path=image,
        kind=kind,
        tree=tree,
        identity=identity,
        environment=environment,
        labels=labels,
        architecture=architecture,
        sif=sif_image,
        warnings=tuple(warnings),
    )


# --- environment and labels, read statically (no shell) ------------------------------------

_ASSIGN = r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def _find_close(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start`` (-1 if none)."""
    depth = 1
    i = start
    quote = ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"':
                i += 1
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _expand_param(body: str, env: Dict[str, str]) -> str:
    m = _rx(_NAME).match(body)
    if m is None:
        return "${" + body + "}"
    name, rest = m.group(0), body[m.end() :]
    value = env.get(name)
    if rest == "":
        return value if value is not None else "${" + name + "}"
    for op in (":-", ":=", "-", "=", ":+", "+"):
        if rest.startswith(op):
            word = _shell_word(rest[len(op) :], env)[0]
            if op in (":-", ":="):
                return value if value else word
            if op in ("-", "="):
                return value if value is not None else word
            if op == ":+":
                return word if value else ""
            return word if value is not None else ""
    return "${" + body + "}"  # other expansions (${#x}, ${x%y}) are left as written


def _shell_word(text: str, env: Dict[str, str]) -> Tuple[str, int]:
    """Decode one shell word from ``text``: quotes removed, ``$X``/``${X...}`` expanded.

    Variables that are not known (not set by earlier lines) stay as written, ``$PATH``.
    Returns the word and where it ended (at unquoted whitespace, ``;`` or ``#``).
    """
    out: List[str] = []
    i = 0
    quote = ""
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                out.append(c)
            i += 1
            continue
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if not quote or nxt in '"\\$`':
                out.append(nxt)
                i += 2
                continue
        if c == '"':
            quote = "" if quote else '"'
            i += 1
            continue
        if c == "'" and not quote:
            quote = "'"
            i += 1
            continue
        if not quote and (c.isspace() or c in ";&|"):
            break
        if c == "$":
            if text.startswith("${", i):
                end = _find_close(text, i + 2)
                if end < 0:
                    out.append(text[i:])
                    return "".join(out), len(text)
                out.append(_expand_param(text[i + 2 : end], env))
                i = end + 1
                continue
            m = _rx(_NAME).match(text, i + 1)
            if m is not None:
                name = m.group(0)
                out.append(env[name] if name in env else "$" + name)
                i = m.end()
                continue
        out.append(c)
        i += 1
    return "".join(out), i


# `[ -z "$X" ]`, `test -n "${X}"`, `[ -n "${X:-}" ]` (an empty default: the form Apptainer's
# own 95-apps.sh and 99-runtimevars.sh use under `set -u` safety).
_TEST = (r'(?:\[|test)\s+(-[zn])\s+"?'
         r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?-)?\}|([A-Za-z_][A-Za-z0-9_]*))"
         r'"?\s*\]?\s*;?\s*(?:then)?$')


def _condition(text: str, env: Dict[str, str]) -> Optional[bool]:
    """``[ -z "$X" ]`` / ``[ -n "$X" ]`` (or ``test``, or ``${X}`` / ``${X:-}``) evaluated
    against ``env`` (a variable no earlier line set counts as empty); None when the condition
    is anything else."""
    m = _rx(_TEST).match(text.strip())
    if m is None:
        return None
    empty = not env.get(m.group(2) or m.group(3), "")
    return empty if m.group(1) == "-z" else not empty


def parse_env_script(text: str, env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Apply the ``K=V`` / ``export K=V`` / ``K=${K:-V}`` lines of a shell script to ``env``.

    A static reading of Apptainer's ``/.singularity.d/env/*.sh``: no command runs.  ``if``
    blocks testing whether a variable is empty (``[ -z "$X" ]``, ``[ -n "$X" ]``: what
    ``99-base.sh`` does for LD_LIBRARY_PATH) are evaluated; under any other condition only
    the first branch is read.  Other lines (functions, commands) are skipped.  Returns
    ``env`` (a new dict if None) updated in place, in definition order.
    """
    env = {} if env is None else env
    # One entry per open `if`: [does the current branch apply, was a branch taken].  An
    # unknown condition counts as true, so the first branch it guards is the one read.
    branches: List[List[bool]] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split(None, 1)[0].rstrip(";")
        if word in ("if", "elif"):
            known = _condition(line[len(word):], env)
            taken = word == "elif" and bool(branches) and branches[-1][1]
            applies = not taken and (known is None or known)
            if word == "if" or not branches:
                branches.append([applies, applies])
            else:
                branches[-1] = [applies, taken or applies]
            continue
        if word == "else" and branches:
            branches[-1] = [not branches[-1][1], True]
            continue
        if word == "fi" and branches:
            branches.pop()
            continue
        if not all(applies for applies, _ in branches):
            continue
        m = _rx(_ASSIGN, dotall=True).match(line)
        if m is None:
            continue
        while m is not None:
            name, rest = m.group(1), m.group(2)
            value, end = _shell_word(rest, env)
            env.pop(name, None)  # keep definition order: a redefinition moves to the end
            env[name] = value
            # `export A=1 B=2`: further assignments on the same line
            tail = rest[end:]
            if not tail[:1].isspace():
                break
            m = _rx(_ASSIGN, dotall=True).match(tail.lstrip())
    return env


def _labels_from_json(data: bytes, origin: str, warnings: List[str]) -> Dict[str, str]:
    import json  # only images with labels need it

    try:
        obj = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        warnings.append(f"{origin}: labels are not valid JSON; ignored")
        return {}
    if not isinstance(obj, dict):
        warnings.append(f"{origin}: labels are not a JSON object; ignored")
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}


def _small_file(tree: Tree, path: str) -> Optional[bytes]:
    from hpcrun.image.fs import FILE

    node = tree.lookup(path)
    if node is None or node.kind != FILE or node.size > MAX_METADATA:
        return None
    return tree.backend.read(node, 0, node.size)


def _metadata(
    tree: Tree, image: Optional[sifmod.SifImage], warnings: List[str]
) -> Tuple[Tuple[Tuple[str, str], ...], Tuple[Tuple[str, str], ...]]:
    """The image's environment and labels: SIF metadata objects first, then the tree's files."""
    from hpcrun.image.fs import DIR

    env: Dict[str, str] = {}
    labels: Dict[str, str] = {}
    if image is not None:
        from hpcrun.image import sif as sifmod

        for d in image.of_type(sifmod.DATA_ENVVAR):
            if d.size <= MAX_METADATA:
                text = image.read_object(d).decode("utf-8", "replace")
                if text.lstrip().startswith("{"):  # a JSON object of variables
                    env.update(_labels_from_json(text.encode(), f"{image.path} object {d.id}",
                                                 warnings))
                else:
                    parse_env_script(text, env)
        for d in image.of_type(sifmod.DATA_LABELS):
            if d.size <= MAX_METADATA:
                labels.update(
                    _labels_from_json(image.read_object(d), f"{image.path} object {d.id}",
                                      warnings)
                )
    env_dir = tree.lookup(ENV_DIR)
    if env_dir is not None and env_dir.kind == DIR:
        for name in sorted(tree.backend.listdir(env_dir)):
            if not name.endswith(".sh"):
                continue
            data = _small_file(tree, f"{ENV_DIR}/{name}")
            if data is not None:
                parse_env_script(data.decode("utf-8", "replace"), env)
    data = _small_file(tree, LABELS_FILE)
    if data is not None:
        labels.update(_labels_from_json(data, LABELS_FILE, warnings))
    return tuple(env.items()), tuple(labels.items())

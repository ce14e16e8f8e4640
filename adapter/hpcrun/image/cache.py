"""A small on-disk cache of facts, shared by every hpcrun process of a user.

One file per key (``<sha256 of key>.json``): a header line naming the format version, the
key (which holds the identity of what the value was computed from: an image's identity, a
profile's bytes, the stat signature of host files) and the SHA-256 of the value, then the
value as JSON.  A text may be kept beside it (``<sha256 of key>.txt``, the same header
line, then the text), read without the JSON parser.  An entry is used only when its header
names this format and this key and its content has that checksum: anything odd (unreadable,
corrupt, a flipped byte, another key, another version) is a miss, removed and recomputed;
the cache never changes a result.  Writes go to a temporary file in the same directory and
are renamed into place, so readers see either the old or the new entry, never half of one,
even with hundreds of ranks starting at once.  A cache directory that cannot be written
disables caching silently; the cache never fails a launch.  Stdlib only, and cheap to
import.

``XDG_CACHE_HOME`` is used only when it is an absolute path (the XDG base-directory
specification says to ignore a relative one).
"""

from __future__ import annotations

import os
import time

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar, Union

    T = TypeVar("T")
    Signature = List[Any]
    PathArg = Union[str, os.PathLike[str]]  # a str or a pathlib.Path

CACHE_FORMAT = 2
MAX_ENTRIES = 512
MAX_BYTES = 64 << 20
SUFFIX = ".json"
TEXT_SUFFIX = ".txt"


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` in hex (cache keys and file names).

    CPython's own SHA-256 module is used when present: ``import hashlib`` loads OpenSSL,
    which costs a launch more than the rest of a cache hit.  Same digest either way.
    """
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # 3.12+
        except ImportError:
            from hashlib import sha256
    return str(sha256(data).hexdigest())


def _debug(message: str, *args: object) -> None:
    """A debug note (logging is imported only when there is something to say)."""
    import logging

    logging.getLogger(__name__).debug(message, *args)


def default_directory(environ: Optional[Dict[str, str]] = None) -> str:
    """``$XDG_CACHE_HOME/hpcrun`` (when absolute), or ``~/.cache/hpcrun``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME") or ""
    base = xdg if os.path.isabs(xdg) else os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".cache"
    )
    return os.path.join(base, "hpcrun")


def _header(key: str, body: bytes) -> bytes:
    """An entry's first line: format, checksum of ``body``, key (which ends the line)."""
    return f"{CACHE_FORMAT} {sha256_hex(body)} {key}\n".encode("utf-8", "surrogatepass")


class FactsCache:
    """get/put JSON-serialisable dicts (and texts) by string key, in ``directory``."""

    def __init__(
        self,
        directory: Optional[PathArg] = None,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        # A str, not a pathlib.Path: importing pathlib costs a cache hit more than the hit.
        self.directory = os.fspath(directory) if directory is not None else default_directory()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._disabled = False

    def _path(self, key: str, suffix: str = SUFFIX) -> str:
        digest = sha256_hex(key.encode("utf-8", "surrogatepass"))
        return os.path.join(self.directory, digest + suffix)

    def _body(self, key: str, suffix: str) -> Optional[bytes]:
        """The checked content of ``key``'s entry, or None; a damaged or foreign entry is
        removed (the caller computes the value again and stores it)."""
        if "\n" in key:
            return None
        path = self._path(key, suffix)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        head, newline, body = data.partition(b"\n")
        if newline and _header(key, body) == head + newline:
            return body
        _debug("hpcrun cache: ignoring a damaged or foreign entry %s", path)
        self._unlink(path)
        return None

    def get(self, key: str) -> Optional[dict]:
        """The value stored for ``key``, or None (absent, corrupt, foreign or old format)."""
        body = self._body(key, SUFFIX)
        if body is None:
            return None
        import json  # not needed by get_text, the cheapest hit

        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    def get_text(self, key: str) -> Optional[str]:
        """The text stored for ``key`` by :meth:`put_text`, or None."""
        body = self._body(key, TEXT_SUFFIX)
        if body is None:
            return None
        try:
            return body.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return None

    def put_text(self, key: str, text: str) -> None:
        """Store ``text`` for ``key`` atomically (beside, not inside, its JSON value)."""
        if "\n" not in key:
            body = text.encode("utf-8", "surrogatepass")
            self._write(self._path(key, TEXT_SUFFIX), _header(key, body) + body)

    def put(self, key: str, value: Dict[str, Any]) -> None:
        """Store ``value`` for ``key`` atomically; silently does nothing when it cannot."""
        import json

        if "\n" in key:
            return
        try:
            body = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            _debug("hpcrun cache: value for %r is not JSON: %s", key, exc)
            return
        self._write(self._path(key), _header(key, body) + body)

    def _write(self, path: str, data: bytes) -> None:
        """Write ``data`` to ``path`` through a temporary file and a rename.

        The temporary name is unique per process and write (pid + 48 random bits) and is
        created with O_EXCL, as ``tempfile.mkstemp`` would (whose import costs more).
        """
        if self._disabled:
            return
        tmp = os.path.join(self.directory, f".tmp-{os.getpid()}-{os.urandom(6).hex()}{SUFFIX}")
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._disabled = True
            _debug("hpcrun cache disabled: %s: %s", self.directory, exc)
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            _debug("hpcrun cache: cannot write %s: %s", self.directory, exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return
        self._maybe_evict(len(data))

    def _maybe_evict(self, written: int) -> None:
        # A put follows a cache miss, which costs far more than listing a few hundred
        # entries: bound the cache on every write.
        del written
        self.evict()

    def evict(self) -> int:
        """Remove the oldest entries beyond ``max_entries`` / ``max_bytes``; returns how many.

        Also removes temporary files left behind by killed writers (older than a minute).
        """
        entries: List[Tuple[float, int, str]] = []
        removed = 0
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if e.name.startswith(".tmp-"):
                        if time.time() - st.st_mtime > 60:
                            removed += self._unlink(e.path)
                        continue
                    if e.name.endswith((SUFFIX, TEXT_SUFFIX)):
                        entries.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            return removed
        entries.sort(reverse=True)  # newest first
        total = 0
        for index, (_mtime, size, path) in enumerate(entries):
            total += size
            if index >= self.max_entries or total > self.max_bytes:
                removed += self._unlink(path)
        return removed

    @staticmethod
    def _unlink(path: str) -> int:
        try:
            os.unlink(path)
            return 1
        except OSError:
            return 0

    def clear(self) -> None:
        """Remove every entry (for ``hpcrun cache clear`` and tests)."""
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    if e.name.endswith((SUFFIX, TEXT_SUFFIX)):
                        self._unlink(e.path)
        except OSError:
            pass


# --- values remembered while the host files they were read from are unchanged ------------
# The host closure (hundreds of ELF files parsed), the host MPI libraries and the host's
# ld.so.cache are the same launch after launch; each is stored with the stat signature of
# every file it read and every directory it looked a name up in or listed (a file added,
# removed or renamed there changes the directory's mtime), and checking a few hundred stats
# is far cheaper than reading the files again.

# A file modified this close to the walk may have changed after it was read without its
# mtime telling (coarse time stamps): such values are not stored.
RACY_NS = 2_000_000_000


def stat_signature(root: PathArg, paths: Sequence[str]) -> Signature:
    """``[path, [inode, size, mtime_ns] or None]`` for each host path under ``root`` (stat
    follows links; None for a path that does not exist)."""
    base = os.fspath(root).rstrip("/")
    out: Signature = []
    for path in paths:
        try:
            st = os.stat(base + path)
        except (OSError, ValueError):
            out.append([path, None])
            continue
        out.append([path, [st.st_ino, st.st_size, st.st_mtime_ns]])
    return out


def signature_matches(root: PathArg, signature: Any) -> bool:
    """Whether every path of a stored :func:`stat_signature` still stats the same."""
    if not isinstance(signature, list) or not signature:
        return False
    paths = []
    for item in signature:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
            return False
        paths.append(item[0])
    return stat_signature(root, paths) == signature


def user_cache() -> Optional[FactsCache]:
    """The user's facts cache, or None when it cannot be opened (caching is then off)."""
    try:
        return FactsCache()
    except (OSError, ValueError, TypeError):
        return None


def remembered(key: str, root: PathArg, walk: Callable[[Set[str]], Tuple[T, bool]],
               to_json: Callable[[T], Any], from_json: Callable[[Any], Optional[T]],
               cache: Optional[FactsCache] = None) -> T:
    """``walk``'s value, from ``cache`` (the user's by default) while nothing it consulted
    has changed.

    ``walk(seen)`` computes the value, adds to ``seen`` every host path (under ``root``)
    whose change could change it (files read; directories a name was looked up in or
    listed), and says whether the value may be stored.  It is stored with the stat signature
    of those paths; a later call whose signature matches gets it back through ``from_json``
    (None: a damaged entry, walked again).  A value that consulted a path changed within
    :data:`RACY_NS` of the walk is not stored.  The cache never changes the value.
    """
    if cache is None:
        cache = user_cache()
    if cache is not None:
        entry = cache.get(key)
        if isinstance(entry, dict) and signature_matches(root, entry.get("signature")):
            hit = from_json(entry.get("value"))
            if hit is not None:
                return hit
    started = time.time_ns()
    seen: Set[str] = set()
    value, cacheable = walk(seen)
    if cache is not None and cacheable and seen:
        signature = stat_signature(root, sorted(seen))
        if any(st is not None and st[2] >= started - RACY_NS for _path, st in signature):
            return value  # changed while (or just before) it was read: not trusted later
        try:
            cache.put(key, {"signature": signature, "value": to_json(value)})
        except (OSError, ValueError, TypeError):
            pass
    return value

"""Decompressors for the six squashfs compression ids.

``decompressor(compression_id)`` returns ``f(data, expected_size) -> bytes``.  gzip (zlib),
xz and lzma use the standard library; lz4 uses the ``lz4`` package when it is installed and
a pure-Python LZ4 block decoder otherwise; lzo always uses the pure-Python LZO1X decoder
below (python-lzo is GPL); zstd uses ``zstandard`` (a dependency of hpcrun before Python
3.14), else the standard library's ``compression.zstd`` (3.14+) or ``backports.zstd``.
Every failure is an :class:`~hpcrun.errors.ImageError`; the squashfs reader adds where in
the image it happened.  Modules are imported on first use so that the
launch path pays nothing for codecs it never needs.

``stepper(compression_id, data)`` decodes one block incrementally (gzip, xz, lzma): a read
of an ELF header or a small file tail near the start of a 128 KiB block stops decoding
there, which is a third of the bytes image inspection would otherwise inflate.
"""

from __future__ import annotations

from hpcrun.errors import (
    HINT_DAMAGED,
    HINT_TRUNCATED,
    ImageError,
)

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

    Decompress = Callable[[bytes, int], bytes]
    # step(n) -> (up to n more bytes, whether the stream has ended)
    Step = Callable[[int], Tuple[bytes, bool]]


GZIP = 1
LZMA = 2
LZO = 3
XZ = 4
LZ4 = 5
ZSTD = 6

NAMES: Dict[int, str] = {GZIP: "gzip", LZMA: "lzma", LZO: "lzo", XZ: "xz", LZ4: "lz4", ZSTD: "zstd"}


class _Corrupt(Exception):
    """Raised inside the pure-Python decoders; turned into ImageError at the boundary."""


def _too_big(name: str, expected: int) -> ImageError:
    return ImageError(f"corrupt {name} data: decompresses to more than {expected} bytes",
                      hint=HINT_DAMAGED)


def _truncated(name: str) -> ImageError:
    return ImageError(f"corrupt {name} data: the stream is truncated", hint=HINT_TRUNCATED)


def _gzip_steps(data: bytes) -> Step:
    import zlib

    obj = zlib.decompressobj()
    pending = [data]

    def step(n: int) -> Tuple[bytes, bool]:
        while True:
            before = len(pending[0])
            try:
                out = obj.decompress(pending[0], n)
            except zlib.error as exc:
                raise ImageError(f"corrupt gzip data: {exc}", hint=HINT_DAMAGED) from None
            pending[0] = obj.unconsumed_tail
            if out or obj.eof:
                return out, obj.eof
            if not pending[0] or len(pending[0]) == before:
                raise _truncated("gzip")

    return step


def _lzma_steps(name: str, fmt_name: str, data: bytes) -> Step:
    import lzma

    obj = lzma.LZMADecompressor(format=getattr(lzma, fmt_name))
    pending = [data]

    def step(n: int) -> Tuple[bytes, bool]:
        try:
            out = obj.decompress(pending[0], n)
        except (lzma.LZMAError, ValueError, EOFError) as exc:
            raise ImageError(f"corrupt {name} data: {exc}", hint=HINT_DAMAGED) from None
        pending[0] = b""
        if not out and not obj.eof and obj.needs_input:
            raise _truncated(name)
        return out, obj.eof

    return step


def _whole(compression_id: int) -> Decompress:
    """The one-shot decoder of a gzip, xz or lzma block, from its incremental one: at most
    ``expected`` bytes, and the stream must end there."""
    name = NAMES[compression_id]

    def run(data: bytes, expected: int) -> bytes:
        step = stepper(compression_id, data)
        assert step is not None
        out, ended = step(expected + 1)
        if len(out) > expected:
            raise _too_big(name, expected)
        if not ended:
            raise _truncated(name)
        return out

    return run


def stepper(compression_id: int, data: bytes) -> Optional[Step]:
    """An incremental decoder of one compressed block, or None when the codec has none.

    ``step(n)`` returns up to ``n`` more decompressed bytes and whether the stream has
    ended; a stream that stops short raises ImageError.  gzip, xz and lzma streams can be
    decoded part-way (lz4, lzo and zstd blocks are decoded whole by :func:`decompressor`).
    """
    if compression_id == GZIP:
        return _gzip_steps(data)
    if compression_id == XZ:
        return _lzma_steps("xz", "FORMAT_XZ", data)
    if compression_id == LZMA:
        return _lzma_steps("lzma", "FORMAT_ALONE", data)
    return None


def lz4_block_decompress(src: bytes, limit: int) -> bytes:
    """Decode one raw LZ4 *block* (not a frame) of at most ``limit`` bytes, in pure Python.

    The fallback when the ``lz4`` package is absent.  A block is a run of sequences: a token
    (literal length << 4 | match length - 4, 15 meaning "more bytes follow, 255 each"),
    the literals, a little-endian 16-bit distance and the optional match-length bytes; the
    last sequence has literals only.
    """
    out = bytearray()
    n = len(src)
    i = 0
    while True:
        if i >= n:
            raise _Corrupt("truncated sequence")
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            lit, i = _extended_length(src, i, lit, "literal length")
        if i + lit > n:
            raise _Corrupt("literals run past the end of the input")
        if len(out) + lit > limit:
            raise _Corrupt(f"output exceeds {limit} bytes")
        out += src[i : i + lit]
        i += lit
        if i == n:
            return bytes(out)
        if i + 2 > n:
            raise _Corrupt("truncated match offset")
        dist = src[i] | (src[i + 1] << 8)
        i += 2
        length = token & 15
        if length == 15:
            length, i = _extended_length(src, i, length, "match length")
        length += 4
        _copy_match(out, dist, length, limit)


def _extended_length(src: bytes, i: int, length: int, what: str) -> Tuple[int, int]:
    """An LZ4 length of 15 goes on in bytes of 255 until a smaller one: (length, new i)."""
    while True:
        if i >= len(src):
            raise _Corrupt(f"truncated {what}")
        b = src[i]
        i += 1
        length += b
        if b != 255:
            return length, i


def _copy_match(out: bytearray, dist: int, length: int, limit: int) -> None:
    """Append ``length`` bytes copied from ``dist`` bytes back (the copy may overlap)."""
    have = len(out)
    if dist <= 0 or dist > have:
        raise _Corrupt(f"match distance {dist} outside the {have} bytes decoded so far")
    if have + length > limit:
        raise _Corrupt(f"output exceeds {limit} bytes")
    start = have - dist
    if length <= dist:
        out += out[start : start + length]
    else:
        # An overlapping copy repeats the last ``dist`` bytes.
        chunk = bytes(out[start:])
        reps, rest = divmod(length, dist)
        out += chunk * reps + chunk[:rest]


def lzo1x_decompress(src: bytes, limit: int) -> bytes:
    """Decode an LZO1X stream (as squashfs writes it) of at most ``limit`` bytes.

    Pure Python, written from the documented LZO1X bitstream: a first byte > 17 is a
    literal run; then instructions whose meaning for codes 0..15 depends on how many
    literals the previous instruction copied (``state``); a 0001xxxx match at distance
    16384 ends the stream.
    """
    out = bytearray()
    n = len(src)
    i = 0

    def extend(i: int) -> Tuple[int, int]:
        total = 0
        while True:
            if i >= n:
                raise _Corrupt("truncated length")
            b = src[i]
            i += 1
            if b:
                return total + b, i
            total += 255

    def literals(i: int, count: int) -> int:
        if i + count > n:
            raise _Corrupt("literals run past the end of the input")
        if len(out) + count > limit:
            raise _Corrupt(f"output exceeds {limit} bytes")
        out.extend(src[i : i + count])
        return i + count

    if n == 0:
        raise _Corrupt("empty input")
    state = 0
    if src[0] > 17:
        count = src[0] - 17
        i = literals(1, count)
        state = count if count < 4 else 4
    while True:
        if i >= n:
            raise _Corrupt("input ends without an end-of-stream marker")
        inst = src[i]
        i += 1
        if inst < 16:
            if state == 0:
                length = inst
                if length == 0:
                    extra, i = extend(i)
                    length = 15 + extra
                i = literals(i, length + 3)
                state = 4
                continue
            if i >= n:
                raise _Corrupt("truncated instruction")
            high = src[i]
            i += 1
            if state == 4:
                dist = (high << 2) + (inst >> 2) + 2049
                length = 3
            else:
                dist = (high << 2) + (inst >> 2) + 1
                length = 2
            follow = inst & 3
        elif inst < 64:
            if inst < 32:
                length = inst & 7
                if length == 0:
                    extra, i = extend(i)
                    length = 7 + extra
            else:
                length = inst & 31
                if length == 0:
                    extra, i = extend(i)
                    length = 31 + extra
            length += 2
            if i + 2 > n:
                raise _Corrupt("truncated distance")
            value = src[i] | (src[i + 1] << 8)
            i += 2
            follow = value & 3
            if inst < 32:
                dist = 16384 + ((inst & 8) << 11) + (value >> 2)
                if dist == 16384:
                    return bytes(out)
            else:
                dist = (value >> 2) + 1
        else:
            if i >= n:
                raise _Corrupt("truncated instruction")
            high = src[i]
            i += 1
            if inst < 128:
                length = 3 + ((inst >> 5) & 1)
            else:
                length = 5 + ((inst >> 5) & 3)
            dist = (high << 3) + ((inst >> 2) & 7) + 1
            follow = inst & 3
        _copy_match(out, dist, length, limit)
        if follow:
            i = literals(i, follow)
        state = follow


def _pure(name: str, func: Callable[[bytes, int], bytes]) -> Decompress:
    def run(data: bytes, expected: int) -> bytes:
        try:
            return func(data, expected)
        except _Corrupt as exc:
            raise ImageError(f"corrupt {name} data: {exc}", hint=HINT_DAMAGED) from None

    return run


def _lz4_package(data: bytes, expected: int) -> bytes:
    import lz4.block

    try:
        # The size bound makes lz4 stop (with an error) instead of growing past one block.
        out: bytes = lz4.block.decompress(data, uncompressed_size=expected)
    except Exception as exc:  # lz4.block.LZ4BlockError and ValueError for short outputs
        raise ImageError(f"corrupt lz4 data: {exc}", hint=HINT_DAMAGED) from None
    return out


def _have_lz4() -> bool:
    try:
        import lz4.block  # noqa: F401
    except ImportError:
        return False
    return True


def _zstd() -> Decompress:
    try:
        import zstandard
    except ImportError:
        pass
    else:
        dctx = zstandard.ZstdDecompressor()

        def run(data: bytes, expected: int) -> bytes:
            try:
                out: bytes = dctx.decompress(data, max_output_size=expected)
            except zstandard.ZstdError as exc:
                raise ImageError(f"corrupt zstd data: {exc}", hint=HINT_DAMAGED) from None
            if len(out) > expected:
                raise _too_big("zstd", expected)
            return out

        return run
    import importlib

    module = None
    for candidate in ("compression.zstd", "backports.zstd"):
        try:
            module = importlib.import_module(candidate)
            break
        except ImportError:
            continue
    if module is None:
        raise ImageError(
            "the image is compressed with zstd, and no zstd decompressor is installed",
            hint="hpcrun depends on zstandard (Python < 3.14): reinstall hpcrun or pip install "
            "zstandard, or skip the image check with --no-check",
        )
    std: Any = module

    def run_std(data: bytes, expected: int) -> bytes:
        try:
            obj = std.ZstdDecompressor()
            out: bytes = obj.decompress(data, max_length=expected + 1)
        except Exception as exc:  # the module's ZstdError
            raise ImageError(f"corrupt zstd data: {exc}", hint=HINT_DAMAGED) from None
        if len(out) > expected:
            raise _too_big("zstd", expected)
        if not obj.eof:
            raise ImageError("corrupt zstd data: the stream is truncated", hint=HINT_TRUNCATED)
        return out

    return run_std


def decompressor(compression_id: int) -> Decompress:
    """The decompression function for a squashfs compression id (1 gzip ... 6 zstd).

    Raises ImageError for an unknown id, or for zstd without an installed decoder (the hint
    names the package to install).
    """
    if compression_id in (GZIP, XZ, LZMA):
        return _whole(compression_id)
    if compression_id == LZ4:
        return _lz4_package if _have_lz4() else _pure("lz4", lz4_block_decompress)
    if compression_id == LZO:
        return _pure("lzo", lzo1x_decompress)
    if compression_id == ZSTD:
        return _zstd()
    raise ImageError(
        f"unknown squashfs compression id {compression_id}",
        hint="the image is corrupt or uses a compressor newer than hpcrun knows; "
        "try `unsquashfs -s IMAGE`",
    )

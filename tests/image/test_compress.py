"""Every squashfs compressor on real mksquashfs images, and the pure-Python decoders."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from helpers.squashfs_trees import LIBDIR, build_tree, mksquashfs, regular_files, source_entries
from hpcrun.errors import ImageError
from hpcrun.image import compress, squashfs
from hpcrun.image.fs import FILE, SYMLINK, Node, Tree
from hpcrun.image.squashfs import SquashfsBackend

# (name, mksquashfs options): small blocks force multi-block files and fragments.
VARIANTS: List[Tuple[str, Tuple[str, ...]]] = [
    ("gzip", ("-comp", "gzip", "-b", "4096")),
    ("xz", ("-comp", "xz", "-b", "4096")),
    ("xz-bcj", ("-comp", "xz", "-Xbcj", "x86")),  # writes compressor options
    ("lzma", ("-comp", "lzma", "-b", "4096")),
    ("lzo", ("-comp", "lzo", "-b", "4096")),
    (
        "lzo-default",
        (
            "-comp",
            "lzo",
        ),
    ),
    ("lz4", ("-comp", "lz4", "-b", "4096")),
    ("lz4-hc", ("-comp", "lz4", "-Xhc", "-b", "8192")),
    ("zstd", ("-comp", "zstd", "-b", "4096")),
    ("uncompressed", ("-noI", "-noD", "-noF", "-noX")),
    ("no-fragments", ("-comp", "gzip", "-b", "4096", "-no-fragments")),
    ("always-fragments", ("-comp", "gzip", "-b", "4096", "-always-use-fragments")),
    ("big-blocks", ("-comp", "gzip", "-b", "1M")),
]


def _h(node: Optional[Node]) -> Any:
    """The squashfs handle inside a node (tests look at internals such as block lists)."""
    assert node is not None
    return node.ref


@pytest.fixture(scope="session")
def small_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real UCX/hwloc libraries with their links, odd-sized files, a 300-entry directory."""
    return build_tree(tmp_path_factory.mktemp("comp-src") / "root", big=False, many=300)


@pytest.fixture(scope="session")
def variant_image(
    small_source: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """Build (once) the image of a VARIANTS entry."""
    built: Dict[str, Path] = {}
    out = tmp_path_factory.mktemp("comp-img")
    options = dict(VARIANTS)

    def build(name: str) -> Path:
        if name not in built:
            built[name] = mksquashfs(small_source, out / f"{name}.sqfs", *options[name])
        return built[name]

    return build


def _check_whole_tree(image: Path, source: Path) -> None:
    backend = SquashfsBackend(str(image))
    tree = Tree(backend)
    seen = {
        path: (node.kind, node.mode, node.size if node.kind == FILE else 0, node.mtime)
        for path, node in backend.walk()
        if not path.startswith("/dev/")
    }
    expected = source_entries(source)
    assert seen == expected
    for rel, src in regular_files(source):
        assert tree.read(rel) == src.read_bytes(), rel
    for rel, (kind, *_rest) in expected.items():
        if kind == SYMLINK:
            target = (source / rel.lstrip("/")).readlink()
            assert tree.readlink(rel) == str(target), rel
    assert tree.listdir("/many") == sorted(p.name for p in (source / "many").iterdir())
    backend.close()


@pytest.mark.parametrize("variant", [name for name, _ in VARIANTS])
def test_compressor_variant(
    variant: str, variant_image: Callable[[str], Path], small_source: Path
) -> None:
    _check_whole_tree(variant_image(variant), small_source)


def test_superblock_reports_compressor(variant_image: Callable[[str], Path]) -> None:
    ids = {"gzip": 1, "lzma": 2, "lzo": 3, "xz": 4, "lz4": 5, "zstd": 6}
    for name, number in ids.items():
        assert SquashfsBackend(str(variant_image(name))).compression == number


def _hide_modules(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``import name`` fail, as if the package were not installed."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_pure_python_lz4_path(
    monkeypatch: pytest.MonkeyPatch, variant_image: Callable[[str], Path], small_source: Path
) -> None:
    _hide_modules(monkeypatch, "lz4", "lz4.block")
    assert not compress._have_lz4()
    assert compress.decompressor(compress.LZ4) is not compress._lz4_package
    for name in ("lz4", "lz4-hc"):
        _check_whole_tree(variant_image(name), small_source)


def test_pure_lz4_matches_the_package_on_real_bytes() -> None:
    lz4_block = pytest.importorskip("lz4.block")
    data = (LIBDIR / "libucp.so.0").read_bytes()[:300_000]
    for mode in ("default", "high_compression", "fast"):
        packed = lz4_block.compress(data, mode=mode, store_size=False)
        assert compress.lz4_block_decompress(packed, len(data)) == data


def _first_data_block(image: Path, path: str) -> Tuple[bytes, int, bytes]:
    """(stored bytes, block size, expected plain bytes) of a file's first data block."""
    backend = SquashfsBackend(str(image))
    node = Tree(backend).lookup(path)
    assert node is not None
    backend._load_blocks(_h(node))
    ref = _h(node)
    word = ref.words[0]
    assert not word & (1 << 24), "expected a compressed block"
    raw = backend._pread(ref.offsets[0], word & 0xFFFFFF, "test")
    plain = backend.read(node, 0, backend.block_size)
    backend.close()
    return raw, backend.block_size, plain


@pytest.mark.parametrize("variant", ["lzo", "lz4", "gzip", "xz", "lzma", "zstd"])
def test_damaged_blocks_raise_image_error(
    variant: str, variant_image: Callable[[str], Path]
) -> None:
    """Truncated or bit-flipped compressed blocks give ImageError or bytes, nothing else."""
    raw, block_size, plain = _first_data_block(variant_image(variant), "/data/big")
    number = {"lzo": 3, "lz4": 5, "gzip": 1, "xz": 4, "lzma": 2, "zstd": 6}[variant]
    decode = compress.decompressor(number)
    assert decode(raw, block_size) == plain
    for cut in range(0, len(raw), max(1, len(raw) // 40)):
        try:
            out = decode(raw[:cut], block_size)
        except ImageError as exc:
            assert f"corrupt {variant}" in exc.message
        else:
            assert out != plain or cut == len(raw)
    for at in range(0, len(raw), max(1, len(raw) // 40)):
        damaged = bytearray(raw)
        damaged[at] ^= 0x5A
        try:
            decode(bytes(damaged), block_size)
        except ImageError:
            pass


def test_outputs_are_bounded() -> None:
    """A block that inflates beyond its expected size is rejected (no decompression bombs)."""
    bomb = zlib.compress(bytes(1 << 20))
    with pytest.raises(ImageError, match="more than 8192"):
        compress.decompressor(compress.GZIP)(bomb, 8192)
    with pytest.raises(ImageError, match="corrupt lz4"):
        compress.decompressor(compress.LZ4)(b"\xf0" + b"\xff" * 10, 8192)
    lz4_run = bytes([0x1F, 0x41, 0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x10, 0x00])
    with pytest.raises(ImageError, match="exceeds 64"):
        compress._pure("lz4", compress.lz4_block_decompress)(lz4_run, 64)


def test_unknown_compressor() -> None:
    with pytest.raises(ImageError, match="unknown squashfs compression id 7") as info:
        compress.decompressor(7)
    assert "unsquashfs" in info.value.hint


def test_missing_zstd_package_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, variant_image: Callable[[str], Path]
) -> None:
    image = variant_image("zstd")
    _hide_modules(
        monkeypatch, "zstandard", "compression", "compression.zstd", "backports", "backports.zstd"
    )
    with pytest.raises(ImageError) as info:
        compress.decompressor(compress.ZSTD)
    assert "zstandard" in info.value.hint and "--no-check" in info.value.hint
    backend = SquashfsBackend(str(image))  # opening needs no decompressor yet
    with pytest.raises(ImageError, match="zstd") as info:
        Tree(backend).listdir("/")
    assert str(image) in info.value.message and "zstandard" in info.value.hint


# -- incremental decoding (gzip, xz, lzma) -------------------------------------------------


def _drain(step: compress.Step, chunk: int) -> bytes:
    out = b""
    ended = False
    while not ended:
        more, ended = step(chunk)
        assert len(more) <= chunk
        out += more
    return out


@pytest.mark.parametrize("variant", ["gzip", "xz", "lzma"])
def test_stepper_matches_whole_block_decoding(
    variant: str, variant_image: Callable[[str], Path]
) -> None:
    """Decoding a real block in steps of any size gives the bytes of the one-shot decoder."""
    raw, _block_size, plain = _first_data_block(variant_image(variant), "/data/big")
    number = {"gzip": 1, "xz": 4, "lzma": 2}[variant]
    for chunk in (1, 7, 1000, len(plain), len(plain) + 1):
        step = compress.stepper(number, raw)
        assert step is not None
        assert _drain(step, chunk) == plain


@pytest.mark.parametrize("variant", ["gzip", "xz", "lzma"])
def test_stepper_on_damaged_blocks_raises_image_error(
    variant: str, variant_image: Callable[[str], Path]
) -> None:
    """A truncated stream is reported once its bytes run out; damage never escapes as
    anything but ImageError."""
    raw, _block_size, _plain = _first_data_block(variant_image(variant), "/data/big")
    number = {"gzip": 1, "xz": 4, "lzma": 2}[variant]
    step = compress.stepper(number, raw[: len(raw) // 2])
    assert step is not None
    with pytest.raises(ImageError, match=f"corrupt {variant} data"):
        _drain(step, 512)
    for at in range(0, len(raw), max(1, len(raw) // 40)):
        damaged = bytearray(raw)
        damaged[at] ^= 0x5A
        step = compress.stepper(number, bytes(damaged))
        assert step is not None
        try:
            _drain(step, 512)
        except ImageError:
            pass


def test_codecs_without_steps_decode_whole_blocks() -> None:
    assert all(compress.stepper(number, b"") is None for number in (3, 5, 6))


@pytest.mark.parametrize("variant", [name for name, _ in VARIANTS])
def test_ranges_read_in_any_order_match_the_source(
    variant: str, variant_image: Callable[[str], Path], small_source: Path
) -> None:
    """Reads that stop inside blocks, then go further, then back, give the file's bytes
    (a partly decoded block grows; every codec, block size and fragment layout)."""
    backend = SquashfsBackend(str(variant_image(variant)))
    tree = Tree(backend)
    for rel in ("/data/big", "/data/exact4097", "/data/exact4095"):
        whole = (small_source / rel.lstrip("/")).read_bytes()
        size = len(whole)
        for offset, length in ((0, 64), (0, 40_000), (10, 5), (size - 3, 3), (size // 2, 1),
                               (0, size), (size // 3, size), (1, 64)):
            assert tree.read(rel, offset, length) == whole[offset : offset + length], (
                rel, offset, length)
    backend.close()


def test_a_read_near_a_block_start_decodes_only_that_far(
    variant_image: Callable[[str], Path], small_source: Path
) -> None:
    """With 1 MiB blocks, an ELF header read decodes tens of kB, not the whole block; the
    rest is decoded when asked for, and the finished block replaces the partial one."""
    backend = SquashfsBackend(str(variant_image("big-blocks")))
    tree = Tree(backend)
    whole = (small_source / "data/big").read_bytes()
    assert len(whole) > 256 << 10
    assert tree.read("/data/big", 0, 64) == whole[:64]
    (entry,) = backend._data_cache.values()
    assert isinstance(entry, squashfs._Partial) and 0 < len(entry.data) < 256 << 10
    assert tree.read("/data/big", 200_000, 10) == whole[200_000:200_010]
    assert tree.read("/data/big") == whole
    assert all(isinstance(v, bytes) for v in backend._data_cache.values())
    backend.close()


def test_a_block_that_inflates_too_far_is_caught_when_it_completes(tmp_path: Path) -> None:
    """A partly decoded block is checked like a whole one once it is read to its end."""
    source = tmp_path / "root"
    source.mkdir()
    text = b"a line of text that compresses very well\n" * 50_000  # 2 MB: two 1 MiB blocks
    (source / "text").write_bytes(text)
    image = mksquashfs(source, tmp_path / "one.sqfs", "-comp", "gzip", "-b", "1M")
    backend = SquashfsBackend(str(image))
    node = Tree(backend).lookup("/text")
    assert node is not None
    backend._load_blocks(_h(node))
    pos = _h(node).offsets[0]
    backend.block_size = 64 << 10  # the block inflates beyond this, as a bomb would
    assert backend.read(node, 0, 16) == text[:16]
    with pytest.raises(ImageError, match=f"data block at offset {pos}: .*more than 65536"):
        backend.read(node, 0, 100_000)
    backend.close()

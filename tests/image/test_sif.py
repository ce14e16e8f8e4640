"""The SIF reader against real SIF files and what the reference SIF tool prints for them.

The files are written by real Apptainer (``helpers.sif_corpus``: ``apptainer sif new|add``,
``apptainer sign``, ``apptainer build``).  What ``apptainer sif header|list|info|dump``
prints for each file, run live, is recomputed from our parse and compared field by field.
The test writer (``tests/helpers/sifwriter.py``) is checked the same way (Apptainer reads
what it wrote), and byte for byte against a file ``apptainer sif new``/``add`` wrote.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from helpers.sif_corpus import HELLO, sif_dump, sif_tool
from helpers.sifwriter import SifObject, build_sif, partition, write_sif
from hpcrun.errors import ImageError
from hpcrun.image import sif as S
from hpcrun.image.ext3 import Ext3Backend
from hpcrun.image.fs import Tree

# --- rendering our parse the way siftool prints it ------------------------------------------


def readable_size(size: int) -> str:
    """siftool's size format: bytes below 1 KiB, else rounded to the largest binary unit."""
    if size < 1024:
        return f"{size} B"
    div, exp, n = 1024, 0, size // 1024
    while n >= 1024:
        div *= 1024
        exp += 1
        n //= 1024
    return f"{size / div:.0f} {'KMGTPE'[exp]}iB"


def header_fields(h: S.SifHeader) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    if h.launch_script:
        out.append(("Launch Script", h.launch_script.rstrip("\n")))
    out.append(("Version", h.version))
    if h.arch != "unknown":
        out.append(("Primary Architecture", h.arch))
    if h.has_uuid:
        out.append(("ID", h.uuid))
    if S.format_time(h.ctime):
        out.append(("Created At", S.format_time(h.ctime)))
    if S.format_time(h.mtime):
        out.append(("Modified At", S.format_time(h.mtime)))
    out += [
        ("Descriptors Free", str(h.descriptors_free)),
        ("Descriptors Total", str(h.descriptors_total)),
        ("Descriptors Offset", str(h.descriptors_offset)),
        ("Descriptors Size", readable_size(h.descriptors_size)),
        ("Data Offset", str(h.data_offset)),
        ("Data Size", readable_size(h.data_size)),
    ]
    return out


def type_column(d: S.SifDescriptor) -> str:
    if d.partition is not None:
        p = d.partition
        return f"FS ({p.fstype_name}/{p.parttype_name}/{p.arch})"
    if d.signature is not None:
        return f"Signature ({d.signature.hash_name})"
    if d.crypto_message is not None:
        c = d.crypto_message
        return f"Cryptographic Message ({c.format_name}/{c.message_name})"
    if d.datatype == S.DATA_SBOM:
        return f"SBOM ({d.sbom_format})"
    return d.datatype_name


def link_text(d: S.SifDescriptor, sep: str) -> str:
    if d.linked_id == 0:
        return "NONE"
    return f"{d.linked_id}{sep}(G)" if d.link_is_group else str(d.linked_id)


def list_rows(image: S.SifImage) -> List[List[str]]:
    return [
        [
            str(d.id),
            str(d.group) if d.group else "NONE",
            link_text(d, "   "),
            f"{d.offset}-{d.end}",
            type_column(d),
        ]
        for d in image.descriptors
    ]


def info_fields(d: S.SifDescriptor) -> List[Tuple[str, str]]:
    out = [
        ("Data Type", d.datatype_name),
        ("ID", str(d.id)),
        ("Group ID", str(d.group) if d.group else "NONE"),
        ("Linked ID", link_text(d, " ")),
        ("Offset", str(d.offset)),
        ("Size", str(d.size)),
    ]
    if S.format_time(d.ctime):
        out.append(("Created At", S.format_time(d.ctime)))
    if S.format_time(d.mtime):
        out.append(("Modified At", S.format_time(d.mtime)))
    if d.name:
        out.append(("Name", d.name))
    if d.partition is not None:
        out += [
            ("Filesystem Type", d.partition.fstype_name),
            ("Partition Type", d.partition.parttype_name),
            ("Architecture", d.partition.arch),
        ]
    if d.signature is not None:
        out.append(("Hash Type", d.signature.hash_name))
        if d.signature.entity:
            out.append(("Entity", d.signature.entity))
    if d.crypto_message is not None:
        out += [
            ("Format Type", d.crypto_message.format_name),
            ("Message Type", d.crypto_message.message_name),
        ]
    if d.datatype == S.DATA_SBOM:
        out.append(("Format", d.sbom_format))
    if d.oci_digest:
        out.append(("Digest", d.oci_digest))
    return out


def parse_fields(text: str) -> List[Tuple[str, str]]:
    """'Key:   value' lines of ``apptainer sif header|info``."""
    out = []
    for line in text.splitlines():
        if line.strip():
            key, value = line.split(":", 1)
            out.append((key.strip(), value.strip()))
    return out


def parse_list(text: str) -> List[List[str]]:
    rows = []
    for line in text.splitlines():
        if "|" in line and not line.startswith("ID "):
            rows.append([cell.strip() for cell in line.split("|")])
    return rows


def corpus(sif_data: Path) -> List[Path]:
    """Every SIF file of the corpus."""
    return sorted((sif_data / "images").glob("*.sif"))


# --- the reference tool, run live -----------------------------------------------------------


def test_header_matches_apptainer(sif_data: Path) -> None:
    images = corpus(sif_data)
    assert len(images) >= 18
    for image in images:
        got = header_fields(S.read_sif(str(image)).header)
        assert got == parse_fields(sif_tool("header", str(image))), image


def test_list_matches_apptainer(sif_data: Path) -> None:
    for image in corpus(sif_data):
        assert list_rows(S.read_sif(str(image))) == parse_list(sif_tool("list", str(image))), image


def test_info_and_dump_match_apptainer_for_every_object(sif_data: Path) -> None:
    kinds = set()
    for image in corpus(sif_data):
        parsed = S.read_sif(str(image))
        for d in parsed.descriptors:
            want = parse_fields(sif_tool("info", str(d.id), str(image)))
            assert info_fields(d) == want, (image, d.id)
            assert parsed.read_object(d) == sif_dump(image, d.id), (image, d.id)
            kinds.add(type_column(d).split(" ")[0])
    # partitions, signatures and every metadata type the corpus holds were compared
    assert {"FS", "Signature", "SBOM", "Cryptographic", "OCI.Blob", "OCI.RootIndex",
            "JSON.Generic", "Def.FILE", "JSON.Labels", "Env.Vars"} <= kinds, kinds


# --- structure of the real images -----------------------------------------------------------


def test_primary_partition_and_architecture(sif_data: Path) -> None:
    one = S.read_sif(str(sif_data / "images" / "one-group.sif"))
    primary = one.primary_partition()
    assert primary is not None and primary.id == 2 and primary.offset == 36864
    assert primary.partition == S.PartitionInfo(S.FS_SQUASHFS, S.PART_PRIMSYS, "01")
    assert one.architecture == "386" and S.GOARCH_TO_MACHINE[one.architecture] == "i686"
    assert one.overlay_partitions() == ()
    assert "Squashfs/*System/386" in sif_tool("list", str(sif_data / "images" / "one-group.sif"))
    two = S.read_sif(str(sif_data / "images" / "two-groups.sif"))
    ext3 = two.by_id(3)
    assert ext3 is not None and ext3.partition is not None
    assert (ext3.group, ext3.partition.fstype, ext3.partition.arch) == (2, S.FS_EXT3, "amd64")
    assert two.overlay_partitions() == ()  # a System partition of another group: no overlay


def test_empty_images_have_no_partition(sif_data: Path) -> None:
    for name in ("empty.sif", "empty-launch-script.sif"):
        image = S.read_sif(str(sif_data / "images" / name))
        assert image.descriptors == () and image.primary_partition() is None
        assert image.architecture == "unknown"


def test_every_real_image_parses(sif_data: Path) -> None:
    images = corpus(sif_data)
    assert len(images) >= 18
    for path in images:
        image = S.read_sif(str(path))
        h = image.header
        assert h.descriptors_free == h.descriptors_total - len(image.descriptors), path
        used = sum(d.size_with_padding for d in image.descriptors)
        assert h.data_size == used, path  # no deleted objects in these
        assert image.file_size == max([h.data_offset] + [d.end for d in image.descriptors])
        for d in image.descriptors:
            if d.datatype == S.DATA_SIGNATURE:
                assert d.signature is not None and d.signature.hash_name.startswith("SHA-")
                target = image.by_id(d.linked_id) if not d.link_is_group else None
                assert d.link_is_group or target is not None, path


def test_hello_from_the_squashfs_partition(sif_data: Path) -> None:
    from hpcrun.image.squashfs import SquashfsBackend

    path = str(sif_data / "images" / "one-group.sif")
    part = S.read_sif(path).primary_partition()
    assert part is not None
    tree = Tree(SquashfsBackend(path, offset=part.offset, size=part.size, name="one-group"))
    assert tree.read("/hello.txt") == HELLO


def test_hello_from_the_ext3_partition(sif_data: Path) -> None:
    path = str(sif_data / "images" / "two-groups.sif")
    part = S.read_sif(path).by_id(3)
    assert part is not None
    tree = Tree(Ext3Backend(path, offset=part.offset, size=part.size))
    assert tree.read("/hello.txt") == HELLO


# --- the test writer, read by real Apptainer ------------------------------------------------

ZT = 946702800  # 2000-01-01 05:00 UTC, the time the reference tests use
SET_DIGEST = "sha256:93a6ab73f77ce27501f74bb35af9b4da5b964c62f96175a1bc0e8ba2ae0dec08"
EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"").hexdigest()
UUID = "de170c43-36ab-44a8-bca9-1ea1a070a274"


def _generic(data: bytes = b"\xfa\xce", **kw: Any) -> SifObject:
    return SifObject(S.DATA_GENERIC, data, **kw)


def _part(data: bytes = b"\xfe\xed", alignment: int = 4096, fstype: int = S.FS_SQUASHFS,
          parttype: int = S.PART_PRIMSYS, arch: str = "386", **kw: Any) -> SifObject:
    return SifObject(S.DATA_PARTITION, data, alignment=alignment,
                     partition=(fstype, parttype, arch), **kw)


def _blob(data: bytes, digest: str = "", **kw: Any) -> SifObject:
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    return SifObject(S.DATA_OCI_BLOB, data, extra=digest.encode(), **kw)


WRITER_CASES: Dict[str, Dict[str, object]] = {
    "TestCreateContainer/Empty": {},
    "TestCreateContainer/EmptyCloseOnUnload": {},
    "TestCreateContainer/EmptyDescriptorLimitedCapacity": {"descriptors_total": 1},
    "TestCreateContainer/EmptyLaunchScript": {"launch_script": "#!/usr/bin/env launch-script\n"},
    "TestCreateContainer/EmptyWithID": {"image_uuid": UUID},
    "TestCreateContainer/EmptyWithTime": {"ctime": ZT, "mtime": ZT},
    "TestCreateContainer/OneDescriptor": {"objects": [_generic()]},
    "TestCreateContainer/TwoDescriptors": {"objects": [_generic(), _part()]},
    "TestCreateContainer/TwoDescriptorsAligned": {"objects": [_generic(), _part(alignment=4)]},
    "TestCreateContainer/TwoDescriptorsNotAligned": {"objects": [_generic(), _part(alignment=1)]},
    "TestCreateContainerAtPath/Empty": {},
    "TestCreateContainerAtPath/OneDescriptor": {"objects": [_generic()]},
    "TestCreateContainerAtPath/TwoDescriptors": {"objects": [_generic(), _part()]},
    "TestAddObject/Empty": {"objects": [_generic()]},
    "TestAddObject/EmptyNotAligned": {"objects": [_generic()]},
    "TestAddObject/EmptyAligned": {"objects": [_generic(alignment=128)]},
    "TestAddObject/NotEmpty": {"objects": [_generic(), _part()]},
    "TestAddObject/NotEmptyNotAligned": {"objects": [_generic(), _part(alignment=1)]},
    "TestAddObject/Deterministic": {"objects": [_generic()], "image_uuid": UUID, "ctime": ZT},
    "TestAddObject/WithTime": {"objects": [_generic(ctime=ZT, mtime=ZT)], "mtime": ZT},
    "TestSetPrimPart/One": {"objects": [_part(b"\xfa\xce", fstype=S.FS_RAW)]},
    "TestSetPrimPart/Two": {
        "objects": [
            _part(b"\xfa\xce", fstype=S.FS_RAW, parttype=S.PART_SYSTEM),
            _part(b"\xfe\xed", fstype=S.FS_RAW, arch="amd64"),
        ]
    },
    "TestFileImage_SetOCIBlobDigest/One": {"objects": [_blob(b"\xfa\xce", digest=SET_DIGEST)]},
    "TestSetMetadata/One": {"objects": [_blob(b"\xfa\xce", digest=EMPTY_DIGEST)]},
    "TestFileImage_SetOCIBlobDigest/Two": {
        # the reference test sets the second digest explicitly (SetOCIBlobDigest)
        "objects": [_blob(b"\xfa\xce"), _blob(b"\xfe\xed", digest=SET_DIGEST)]
    },
}


@pytest.mark.parametrize("case", sorted(WRITER_CASES))
def test_writer_output_as_apptainer_reads_it(tmp_path: Path, case: str) -> None:
    """Each writer case (the shapes the reference library's own tests write), read back by
    real Apptainer: its header, listing, object details and object bytes are what we wrote
    and what our reader says."""
    options = dict(WRITER_CASES[case])
    objects = list(options.get("objects", []))  # type: ignore[call-overload]
    path = write_sif(tmp_path / "w.sif", **options)  # type: ignore[arg-type]
    assert path.read_bytes() == build_sif(**options)  # type: ignore[arg-type]
    parsed = S.read_sif(str(path))
    assert header_fields(parsed.header) == parse_fields(sif_tool("header", str(path)))
    assert list_rows(parsed) == parse_list(sif_tool("list", str(path)))
    assert len(parsed.descriptors) == len(objects)
    for d, obj in zip(parsed.descriptors, objects):
        assert info_fields(d) == parse_fields(sif_tool("info", str(d.id), str(path)))
        assert sif_dump(path, d.id) == obj.data


def test_writer_matches_apptainer_byte_for_byte(sif_data: Path) -> None:
    """one-group.sif as ``apptainer sif new`` + two ``sif add`` wrote it, written again by
    our writer from the same objects, IDs, times and UUID: the very same bytes."""
    original = sif_data / "images" / "one-group.sif"
    parsed = S.read_sif(str(original))
    objects = [
        SifObject(d.datatype, parsed.read_object(d), alignment=4096, group=d.group,
                  name=d.name, ctime=d.ctime, mtime=d.mtime, uid=d.uid, gid=d.gid,
                  partition=(d.partition.fstype, d.partition.parttype, d.partition.arch))
        for d in parsed.descriptors if d.partition is not None
    ]
    h = parsed.header
    ours = build_sif(objects, image_uuid=h.uuid, ctime=h.ctime, mtime=h.mtime,
                     launch_script=h.launch_script)
    assert ours == original.read_bytes()


def test_writer_round_trip(tmp_path: Path) -> None:
    path = write_sif(
        tmp_path / "x.sif",
        [
            SifObject(S.DATA_DEFFILE, b"Bootstrap: docker\n", name="def"),
            _part(b"x" * 5000, fstype=S.FS_SQUASHFS, arch="arm64"),
            _part(b"y" * 10, fstype=S.FS_EXT3, parttype=S.PART_OVERLAY, arch="arm64"),
            SifObject(S.DATA_SIGNATURE, b"sig", group=0, link=1, link_group=True,
                      signature=(2, bytes(range(20)))),
        ],
        image_uuid=UUID,
        ctime=ZT,
    )
    image = S.read_sif(str(path))
    assert image.header.arch == "arm64" and image.header.uuid == UUID
    assert [d.id for d in image.descriptors] == [1, 2, 3, 4]
    assert image.primary_partition() == image.by_id(2)
    assert image.overlay_partitions() == (image.by_id(3),)
    sig = image.by_id(4)
    assert sig is not None and sig.signature is not None
    assert sig.signature.hash_name == "SHA-384"
    assert sig.signature.entity == bytes(range(20)).hex().upper()
    assert (sig.group, sig.linked_id, sig.link_is_group) == (0, 1, True)
    assert image.read_object(image.by_id(1)) == b"Bootstrap: docker\n"  # type: ignore[arg-type]


def test_streamed_write_equals_build(sif_data: Path, tmp_path: Path) -> None:
    fs_image = tmp_path / "hello.sqfs"  # the squashfs partition of one-group.sif
    fs_image.write_bytes(sif_dump(sif_data / "images" / "one-group.sif", 2))
    objects = [_generic(b"abc"), partition(fs_image, arch="amd64"), _generic(b"z", alignment=64)]
    written = write_sif(tmp_path / "s.sif", objects, launch_script="#!x\n", ctime=ZT)
    assert written.read_bytes() == build_sif(objects, launch_script="#!x\n", ctime=ZT)
    assert written.read_bytes()[32768 : 32768 + 4096] == fs_image.read_bytes()


@pytest.mark.parametrize("code,name", sorted(S.ARCH_CODES.items()))
def test_architecture_codes(tmp_path: Path, code: str, name: str) -> None:
    path = write_sif(tmp_path / "a.sif", [_part(b"z", arch=code)])
    image = S.read_sif(str(path))
    assert image.header.arch == name
    assert image.architecture == name


# --- bad input ------------------------------------------------------------------------------


def _bytes(sif_data: Path, name: str = "one-group.sif") -> bytearray:
    return bytearray((sif_data / "images" / name).read_bytes())


def _expect_error(tmp_path: Path, data: bytearray, *words: str) -> ImageError:
    path = tmp_path / "bad.sif"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as info:
        S.read_sif(str(path))
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)
    return info.value


def test_truncated_header(tmp_path: Path, sif_data: Path) -> None:
    _expect_error(tmp_path, _bytes(sif_data)[:100], "truncated")


def test_wrong_magic(tmp_path: Path, sif_data: Path) -> None:
    data = _bytes(sif_data)
    data[32:41] = b"NOT_MAGIC"
    _expect_error(tmp_path, data, "not a SIF file")


def test_unknown_version(tmp_path: Path, sif_data: Path) -> None:
    data = _bytes(sif_data)
    data[42:44] = b"02"
    _expect_error(tmp_path, data, "unsupported SIF version '02'")


def test_descriptor_table_beyond_eof(tmp_path: Path, sif_data: Path) -> None:
    _expect_error(tmp_path, _bytes(sif_data)[:10000], "descriptor table")


def test_descriptor_count_absurd(tmp_path: Path, sif_data: Path) -> None:
    data = _bytes(sif_data)
    data[88:96] = (1 << 40).to_bytes(8, "little")  # descriptors total
    _expect_error(tmp_path, data, "corrupt SIF header")


def test_partition_beyond_eof(tmp_path: Path, sif_data: Path) -> None:
    # one-group.sif ends exactly with its squashfs partition: cut 1 byte of it
    _expect_error(tmp_path, _bytes(sif_data)[:-1], "truncated SIF file: object 2", "the file has")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot read"):
        S.read_sif(str(tmp_path / "nope.sif"))

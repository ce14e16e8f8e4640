"""The Singularity Image Format (SIF): global header, descriptors, partitions.

A SIF file is a 128-byte global header, a table of fixed-size (585-byte) descriptors and
the data objects they point at.  Only the layout is read here (no data is copied): the
container file systems are then opened in place, at their offsets, by the squashfs and
ext3 readers.  All integers are little-endian; names and codes are NUL-padded byte strings.
"""

from __future__ import annotations

import os
import struct
import time

from hpcrun.errors import (
    HINT_ACCESS,
    HINT_TRUNCATED,
    ImageError,
)
from hpcrun.records import record

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Dict, List, Optional, Tuple

SIF_MAGIC = b"SIF_MAGIC\x00"
MAGIC_OFFSET = 32
HEADER_FORMAT = "<32s10s3s3s16s8q"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 128
DESCRIPTOR_FORMAT = "<i?III7q128s384s"
DESCRIPTOR_SIZE = struct.calcsize(DESCRIPTOR_FORMAT)  # 585
SUPPORTED_VERSIONS = ("01",)
GROUP_MASK = 0xF0000000
# Go's zero time.Time as Unix seconds: what the reference library writes for "no time".
ZERO_TIME = -62135596800
# A sanity limit on the descriptor table: the reference writes 48; anything past this is a
# corrupt count, not an image (it would make us read gigabytes of "descriptors").
MAX_DESCRIPTORS = 1 << 16

# Data object types.
DATA_DEFFILE = 0x4001
DATA_ENVVAR = 0x4002
DATA_LABELS = 0x4003
DATA_PARTITION = 0x4004
DATA_SIGNATURE = 0x4005
DATA_GENERIC_JSON = 0x4006
DATA_GENERIC = 0x4007
DATA_CRYPTO_MESSAGE = 0x4008
DATA_SBOM = 0x4009
DATA_OCI_ROOT_INDEX = 0x400A
DATA_OCI_BLOB = 0x400B

DATATYPE_NAMES: Dict[int, str] = {
    DATA_DEFFILE: "Def.FILE",
    DATA_ENVVAR: "Env.Vars",
    DATA_LABELS: "JSON.Labels",
    DATA_PARTITION: "FS",
    DATA_SIGNATURE: "Signature",
    DATA_GENERIC_JSON: "JSON.Generic",
    DATA_GENERIC: "Generic/Raw",
    DATA_CRYPTO_MESSAGE: "Cryptographic Message",
    DATA_SBOM: "SBOM",
    DATA_OCI_ROOT_INDEX: "OCI.RootIndex",
    DATA_OCI_BLOB: "OCI.Blob",
}

# Partition file system types.
FS_SQUASHFS = 1
FS_EXT3 = 2
FS_ARCHIVE = 3
FS_RAW = 4
FS_ENCRYPTED_SQUASHFS = 5
FS_GOCRYPTFS = 6
FSTYPE_NAMES: Dict[int, str] = {
    FS_SQUASHFS: "Squashfs",
    FS_EXT3: "Ext3",
    FS_ARCHIVE: "Archive",
    FS_RAW: "Raw",
    FS_ENCRYPTED_SQUASHFS: "Encrypted squashfs",
    FS_GOCRYPTFS: "Gocryptfs squashfs",
}
ENCRYPTED_FSTYPES = (FS_ENCRYPTED_SQUASHFS, FS_GOCRYPTFS)

# Partition types.
PART_SYSTEM = 1
PART_PRIMSYS = 2
PART_DATA = 3
PART_OVERLAY = 4
PARTTYPE_NAMES: Dict[int, str] = {
    PART_SYSTEM: "System",
    PART_PRIMSYS: "*System",
    PART_DATA: "Data",
    PART_OVERLAY: "Overlay",
}

HASH_NAMES: Dict[int, str] = {
    1: "SHA-256",
    2: "SHA-384",
    3: "SHA-512",
    4: "BLAKE2s-256",
    5: "BLAKE2b-256",
}
CRYPTO_FORMAT_NAMES: Dict[int, str] = {1: "OpenPGP", 2: "PEM"}
CRYPTO_MESSAGE_NAMES: Dict[int, str] = {0x100: "Clear Signature", 0x200: "RSA-OAEP"}
SBOM_FORMAT_NAMES: Dict[int, str] = {
    1: "cyclonedx-json",
    2: "cyclonedx-xml",
    3: "github-json",
    4: "spdx-json",
    5: "spdx-rdf",
    6: "spdx-tag-value",
    7: "spdx-yaml",
    8: "syft-json",
}

# Architecture codes (header and partition) and their Go names, as siftool prints them.
ARCH_CODES: Dict[str, str] = {
    "00": "unknown",
    "01": "386",
    "02": "amd64",
    "03": "arm",
    "04": "arm64",
    "05": "ppc64",
    "06": "ppc64le",
    "07": "mips",
    "08": "mipsle",
    "09": "mips64",
    "10": "mips64le",
    "11": "s390x",
    "12": "riscv64",
}
ARCH_BY_NAME: Dict[str, str] = {name: code for code, name in ARCH_CODES.items()}
# Go architecture names in `uname -m` spelling (what ImageFacts.architecture uses).
GOARCH_TO_MACHINE: Dict[str, str] = {
    "386": "i686",
    "amd64": "x86_64",
    "arm": "armv7l",
    "arm64": "aarch64",
    "ppc64": "ppc64",
    "ppc64le": "ppc64le",
    "mips": "mips",
    "mipsle": "mips",
    "mips64": "mips64",
    "mips64le": "mips64",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def _cstr(raw: bytes) -> str:
    """A NUL-padded byte field as text (undecodable bytes escaped, never an exception)."""
    return raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")


NIL_UUID = "00000000-0000-0000-0000-000000000000"


def format_uuid(raw: bytes) -> str:
    """16 bytes as a canonical 8-4-4-4-12 UUID string (without importing uuid)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def arch_name(code: str) -> str:
    """The Go name (``amd64``) of a SIF architecture code (``02``); ``unknown`` if unlisted."""
    return ARCH_CODES.get(code, "unknown")


def format_time(seconds: int) -> str:
    """A SIF time as siftool prints it (``2020-05-22 19:30:59 +0000 UTC``); '' for zero time."""
    if seconds == ZERO_TIME:
        return ""
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + " +0000 UTC"
    except (OverflowError, OSError, ValueError):
        return str(seconds)


@record
class SifHeader:
    """The SIF global header (first 128 bytes)."""

    launch_script: str
    magic: bytes
    version: str
    arch_code: str
    uuid: str  # canonical 8-4-4-4-12 text; the nil UUID when none was set
    ctime: int
    mtime: int
    descriptors_free: int
    descriptors_total: int
    descriptors_offset: int
    descriptors_size: int
    data_offset: int
    data_size: int

    @property
    def arch(self) -> str:
        """The primary architecture's Go name (``amd64``), or ``unknown``."""
        return arch_name(self.arch_code)

    @property
    def has_uuid(self) -> bool:
        """Whether the image has a (non-nil) UUID."""
        return self.uuid != NIL_UUID


@record
class PartitionInfo:
    """The descriptor extra of a partition object."""

    fstype: int
    parttype: int
    arch_code: str

    @property
    def fstype_name(self) -> str:
        """Squashfs, Ext3, Raw, Encrypted squashfs ... as siftool prints it."""
        return FSTYPE_NAMES.get(self.fstype, "Unknown")

    @property
    def parttype_name(self) -> str:
        """System, *System (primary), Data or Overlay."""
        return PARTTYPE_NAMES.get(self.parttype, "Unknown")

    @property
    def arch(self) -> str:
        """The Go architecture name of the partition."""
        return arch_name(self.arch_code)

    @property
    def encrypted(self) -> bool:
        """Whether the partition is encrypted (LUKS2 or gocryptfs squashfs)."""
        return self.fstype in ENCRYPTED_FSTYPES


@record
class SignatureInfo:
    """The descriptor extra of a signature object: hash type and signing key fingerprint."""

    hash_type: int
    entity: str  # upper-case hex of the 20-byte fingerprint; '' when absent (DSSE)

    @property
    def hash_name(self) -> str:
        """SHA-256, SHA-384 ... as siftool prints it."""
        return HASH_NAMES.get(self.hash_type, "Unknown")


@record
class CryptoMessageInfo:
    """The descriptor extra of a cryptographic message object."""

    format_type: int
    message_type: int

    @property
    def format_name(self) -> str:
        """OpenPGP or PEM."""
        return CRYPTO_FORMAT_NAMES.get(self.format_type, "Unknown")

    @property
    def message_name(self) -> str:
        """Clear Signature or RSA-OAEP."""
        return CRYPTO_MESSAGE_NAMES.get(self.message_type, "Unknown")


@record
class SifDescriptor:
    """One used data object descriptor, with its type-specific extra decoded."""

    datatype: int
    used: bool
    id: int
    groupid: int  # raw, with GROUP_MASK set; see ``group``
    link: int  # raw; see ``linked_id`` / ``link_is_group``
    offset: int
    size: int
    size_with_padding: int
    ctime: int
    mtime: int
    uid: int
    gid: int
    name: str
    extra: bytes
    partition: Optional[PartitionInfo] = None
    signature: Optional[SignatureInfo] = None
    crypto_message: Optional[CryptoMessageInfo] = None
    sbom_format: str = ""
    oci_digest: str = ""

    @property
    def datatype_name(self) -> str:
        """FS, Signature, JSON.Generic ... as siftool prints it."""
        return DATATYPE_NAMES.get(self.datatype, "Unknown")

    @property
    def group(self) -> int:
        """The object group (0 = no group)."""
        return self.groupid & ~GROUP_MASK & 0xFFFFFFFF

    @property
    def linked_id(self) -> int:
        """The object or group this object is linked to (0 = none)."""
        return self.link & ~GROUP_MASK & 0xFFFFFFFF

    @property
    def link_is_group(self) -> bool:
        """Whether ``linked_id`` names a group rather than an object."""
        return self.link & GROUP_MASK == GROUP_MASK

    @property
    def end(self) -> int:
        """The file offset just past the object's data."""
        return self.offset + self.size


@record
class SifImage:
    """A parsed SIF file: its header and its used descriptors, in table order."""

    path: str
    file_size: int
    header: SifHeader
    descriptors: Tuple[SifDescriptor, ...]

    def by_id(self, object_id: int) -> Optional[SifDescriptor]:
        """The descriptor with that object ID, or None."""
        for d in self.descriptors:
            if d.id == object_id:
                return d
        return None

    def partitions(self) -> Tuple[SifDescriptor, ...]:
        """All partition descriptors."""
        return tuple(d for d in self.descriptors if d.partition is not None)

    def primary_partition(self) -> Optional[SifDescriptor]:
        """The primary system partition (parttype 2), or None."""
        for d in self.partitions():
            assert d.partition is not None
            if d.partition.parttype == PART_PRIMSYS:
                return d
        return None

    def overlay_partitions(self) -> Tuple[SifDescriptor, ...]:
        """Overlay partitions of the primary partition's group, topmost (last added) first."""
        primary = self.primary_partition()
        if primary is None:
            return ()
        found = [
            d
            for d in self.partitions()
            if d.partition is not None
            and d.partition.parttype == PART_OVERLAY
            and d.group == primary.group
        ]
        return tuple(sorted(found, key=lambda d: d.id, reverse=True))

    def of_type(self, datatype: int) -> Tuple[SifDescriptor, ...]:
        """Descriptors of one data type (e.g. DATA_LABELS)."""
        return tuple(d for d in self.descriptors if d.datatype == datatype)

    @property
    def architecture(self) -> str:
        """The image's Go architecture: the primary partition's, else the header's."""
        primary = self.primary_partition()
        if primary is not None and primary.partition is not None:
            if primary.partition.arch != "unknown":
                return primary.partition.arch
        return self.header.arch

    def read_object(self, descriptor: SifDescriptor, limit: int = 1 << 20) -> bytes:
        """The data of a (small) object; ImageError if the file is shorter than it says."""
        if descriptor.size > limit:
            raise ImageError(
                f"{self.path}: SIF object {descriptor.id} is {descriptor.size} bytes, "
                f"more than the {limit} expected for metadata"
            )
        try:
            with open(self.path, "rb") as f:
                data = os.pread(f.fileno(), descriptor.size, descriptor.offset)
        except OSError as exc:
            raise ImageError(f"{self.path}: cannot read: {exc.strerror}", hint=HINT_ACCESS) from exc
        if len(data) != descriptor.size:
            raise ImageError(f"{self.path}: SIF object {descriptor.id} is truncated",
                             hint=HINT_TRUNCATED)
        return data


def parse_header(raw: bytes, path: str = "<sif>") -> SifHeader:
    """Decode the 128-byte global header; ImageError on a short header or wrong magic."""
    if len(raw) < HEADER_SIZE:
        raise ImageError(
            f"{path}: truncated SIF file ({len(raw)} bytes, the header alone is {HEADER_SIZE})",
            hint="the image file is incomplete: download or build it again",
        )
    fields = struct.unpack_from(HEADER_FORMAT, raw)
    if fields[1] != SIF_MAGIC:
        raise ImageError(f"{path}: not a SIF file (no SIF_MAGIC at byte offset {MAGIC_OFFSET})",
                         hint="give a .sif image built by Apptainer or SingularityCE (or a "
                              "squashfs/ext3 image or a sandbox directory)")
    version = _cstr(fields[2])
    if version not in SUPPORTED_VERSIONS:
        raise ImageError(
            f"{path}: unsupported SIF version {version!r} (this hpcrun reads version 01)",
            hint="upgrade hpcrun, or rebuild the image with a released Apptainer/Singularity",
        )
    return SifHeader(
        launch_script=_cstr(fields[0]),
        magic=fields[1],
        version=version,
        arch_code=_cstr(fields[3]),
        uuid=format_uuid(fields[4]),
        ctime=fields[5],
        mtime=fields[6],
        descriptors_free=fields[7],
        descriptors_total=fields[8],
        descriptors_offset=fields[9],
        descriptors_size=fields[10],
        data_offset=fields[11],
        data_size=fields[12],
    )


def parse_descriptor(raw: bytes) -> SifDescriptor:
    """Decode one 585-byte descriptor, with the extra of its data type."""
    f = struct.unpack_from(DESCRIPTOR_FORMAT, raw)
    datatype, extra = f[0], f[13]
    partition = signature = crypto = None
    sbom = digest = ""
    if datatype == DATA_PARTITION:
        fstype, parttype, arch = struct.unpack_from("<ii3s", extra)
        partition = PartitionInfo(fstype, parttype, _cstr(arch))
    elif datatype == DATA_SIGNATURE:
        hash_type, entity = struct.unpack_from("<i20s", extra)
        signature = SignatureInfo(hash_type, "" if not any(entity) else entity.hex().upper())
    elif datatype == DATA_CRYPTO_MESSAGE:
        crypto = CryptoMessageInfo(*struct.unpack_from("<ii", extra))
    elif datatype == DATA_SBOM:
        sbom = SBOM_FORMAT_NAMES.get(struct.unpack_from("<i", extra)[0], "unknown")
    elif datatype in (DATA_OCI_ROOT_INDEX, DATA_OCI_BLOB):
        digest = _cstr(extra)
    return SifDescriptor(
        datatype=datatype,
        used=bool(f[1]),
        id=f[2],
        groupid=f[3],
        link=f[4],
        offset=f[5],
        size=f[6],
        size_with_padding=f[7],
        ctime=f[8],
        mtime=f[9],
        uid=f[10],
        gid=f[11],
        name=_cstr(f[12]),
        extra=extra,
        partition=partition,
        signature=signature,
        crypto_message=crypto,
        sbom_format=sbom,
        oci_digest=digest,
    )


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    return os.pread(f.fileno(), size, offset)


def read_sif(path: str) -> SifImage:
    """Parse the header and descriptor table of the SIF file at ``path``.

    Checks what later readers rely on: the magic and version, that the descriptor table
    and every used object lie inside the file.  Raises ImageError naming the file.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = parse_header(_read_at(f, 0, HEADER_SIZE), path)
            total = header.descriptors_total
            if total < 0 or total > MAX_DESCRIPTORS or header.descriptors_offset < 0:
                raise ImageError(
                    f"{path}: corrupt SIF header ({total} descriptors at offset "
                    f"{header.descriptors_offset})",
                    hint="the image file is damaged: download or build it again",
                )
            table_end = header.descriptors_offset + total * DESCRIPTOR_SIZE
            if table_end > size:
                raise ImageError(
                    f"{path}: truncated SIF file: the descriptor table ends at byte "
                    f"{table_end}, the file has {size} bytes",
                    hint="the image file is incomplete: download or build it again",
                )
            table = _read_at(f, header.descriptors_offset, total * DESCRIPTOR_SIZE)
    except OSError as exc:
        raise ImageError(
            f"{path}: cannot read the image: {exc.strerror or exc}",
            hint="check the path and its permissions",
        ) from exc
    descriptors: List[SifDescriptor] = []
    for i in range(total):
        raw = table[i * DESCRIPTOR_SIZE : (i + 1) * DESCRIPTOR_SIZE]
        if not raw[4]:  # the `used` byte: free slots may hold stale or zero bytes
            continue
        d = parse_descriptor(raw)
        at = header.descriptors_offset + i * DESCRIPTOR_SIZE
        if d.offset < 0 or d.size < 0 or d.size_with_padding < 0:
            raise ImageError(
                f"{path}: corrupt SIF descriptor {i} at byte offset {at}: object {d.id} "
                f"({d.datatype_name}) has offset {d.offset} and size {d.size}",
                hint="the image file is damaged, not just incomplete: build or download it "
                     "again and compare its checksum with the original",
            )
        if d.end > size:
            raise ImageError(
                f"{path}: truncated SIF file: object {d.id} ({d.datatype_name}, descriptor "
                f"at byte offset {at}) ends at byte {d.end}, the file has {size} bytes",
                hint="the image file is incomplete (an interrupted copy or download?): copy "
                     "or download it again",
            )
        descriptors.append(d)
    return SifImage(path=path, file_size=size, header=header, descriptors=tuple(descriptors))


def is_sif(head: bytes) -> bool:
    """Whether the first bytes of a file carry the SIF magic."""
    return head[MAGIC_OFFSET : MAGIC_OFFSET + len(SIF_MAGIC)] == SIF_MAGIC

"""Write SIF files for tests: a global header, the descriptor table, the data objects.

The layout follows the reference Go implementation (checked byte for byte against its
``library-outputs`` goldens in ``tests/image/test_sif.py``): descriptors at 4096, data from
the end of the descriptor table, each object placed at the next multiple of its alignment
(``size_with_padding`` counts the gap before it), free descriptor slots all zero, the file
ending with the last object.  Times default to Go's zero time and the UUID to the nil UUID,
so output is deterministic unless asked otherwise.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid as _uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

from hpcrun.image import sif

PAGE = 4096


@dataclass(frozen=True)
class SifObject:
    """One data object to write.

    ``partition`` is (fstype, parttype, arch name) for DATA_PARTITION objects;
    ``signature`` (hash type, 20-byte fingerprint) for DATA_SIGNATURE; ``extra`` raw extra
    bytes for anything else (an OCI digest, a crypto message header ...).  ``group`` 0 means
    no group; ``link`` with ``link_group`` links to a group instead of an object.
    """

    datatype: int
    data: bytes = b""
    path: Optional[str] = None  # take the data from this file instead of ``data``
    alignment: int = 1
    group: int = 1
    link: int = 0
    link_group: bool = False
    name: str = ""
    ctime: int = sif.ZERO_TIME
    mtime: int = sif.ZERO_TIME
    uid: int = 0
    gid: int = 0
    partition: Optional[Tuple[int, int, str]] = None
    signature: Optional[Tuple[int, bytes]] = None
    extra: bytes = b""
    object_id: int = 0  # 0: the next free ID (1, 2, ...)

    def payload(self) -> bytes:
        """The bytes of the object."""
        if self.path is not None:
            return Path(self.path).read_bytes()
        return self.data


def partition(
    fs_image: Union[str, Path],
    fstype: int = sif.FS_SQUASHFS,
    parttype: int = sif.PART_PRIMSYS,
    arch: str = "amd64",
    alignment: int = PAGE,
    group: int = 1,
) -> SifObject:
    """A partition object whose data is the file system image file ``fs_image``."""
    return SifObject(
        sif.DATA_PARTITION,
        path=str(fs_image),
        alignment=alignment,
        group=group,
        partition=(fstype, parttype, arch),
    )


def _extra(obj: SifObject) -> bytes:
    if obj.partition is not None:
        fstype, parttype, arch = obj.partition
        code = sif.ARCH_BY_NAME.get(arch, arch).encode()
        return struct.pack("<ii3s", fstype, parttype, code)
    if obj.signature is not None:
        hash_type, entity = obj.signature
        return struct.pack("<i256s", hash_type, entity)
    return obj.extra


def _align(value: int, alignment: int) -> int:
    if alignment <= 1:
        return value
    return -(-value // alignment) * alignment


def _size(obj: SifObject) -> int:
    return os.path.getsize(obj.path) if obj.path is not None else len(obj.data)


def _layout(
    objects: Sequence[SifObject],
    arch: Optional[str],
    launch_script: str,
    image_uuid: Union[str, _uuid.UUID, None],
    ctime: int,
    mtime: int,
    descriptors_total: int,
    descriptors_offset: int,
    version: str,
) -> Tuple[bytes, List[Tuple[int, SifObject]]]:
    """The header + descriptor table bytes, and where each object's data goes."""
    if len(objects) > descriptors_total:
        raise ValueError(f"{len(objects)} objects but only {descriptors_total} descriptors")
    data_offset = descriptors_offset + descriptors_total * sif.DESCRIPTOR_SIZE
    table = bytearray(descriptors_total * sif.DESCRIPTOR_SIZE)
    placed: List[Tuple[int, SifObject]] = []
    end = data_offset
    header_arch = "00"
    next_id = 1
    for index, obj in enumerate(objects):
        size = _size(obj)
        offset = _align(end, obj.alignment)
        object_id = obj.object_id or next_id
        next_id = object_id + 1
        link = obj.link | (sif.GROUP_MASK if obj.link_group else 0)
        raw = struct.pack(
            sif.DESCRIPTOR_FORMAT,
            obj.datatype,
            True,
            object_id,
            obj.group | sif.GROUP_MASK,
            link,
            offset,
            size,
            offset - end + size,  # size with the padding before the object
            obj.ctime,
            obj.mtime,
            obj.uid,
            obj.gid,
            obj.name.encode(),
            _extra(obj),
        )
        table[index * sif.DESCRIPTOR_SIZE : (index + 1) * sif.DESCRIPTOR_SIZE] = raw
        placed.append((offset, obj))
        end = offset + size
        if obj.partition is not None and obj.partition[1] == sif.PART_PRIMSYS:
            header_arch = sif.ARCH_BY_NAME.get(obj.partition[2], obj.partition[2])
    if arch is not None:
        header_arch = sif.ARCH_BY_NAME.get(arch, arch)
    if image_uuid is None:
        uuid_bytes = bytes(16)
    elif isinstance(image_uuid, _uuid.UUID):
        uuid_bytes = image_uuid.bytes
    else:
        uuid_bytes = _uuid.UUID(image_uuid).bytes
    header = struct.pack(
        sif.HEADER_FORMAT,
        launch_script.encode(),
        sif.SIF_MAGIC,
        version.encode(),
        header_arch.encode(),
        uuid_bytes,
        ctime,
        mtime,
        descriptors_total - len(objects),
        descriptors_total,
        descriptors_offset,
        descriptors_total * sif.DESCRIPTOR_SIZE,
        data_offset,
        end - data_offset,
    )
    head = header + b"\0" * (descriptors_offset - len(header)) + bytes(table)
    return head, placed


def _options(
    arch: Optional[str] = None,
    launch_script: str = "",
    image_uuid: Union[str, _uuid.UUID, None] = None,
    ctime: int = sif.ZERO_TIME,
    mtime: int = sif.ZERO_TIME,
    descriptors_total: int = 48,
    descriptors_offset: int = PAGE,
    version: str = "01",
) -> dict:
    return dict(arch=arch, launch_script=launch_script, image_uuid=image_uuid, ctime=ctime,
                mtime=mtime, descriptors_total=descriptors_total,
                descriptors_offset=descriptors_offset, version=version)


def build_sif(objects: Sequence[SifObject] = (), **options: Any) -> bytes:
    """The bytes of a SIF file holding ``objects`` in order (small images, goldens).

    Options: ``arch`` (a Go name or a 2-digit code; default the primary partition's, else
    ``00``), ``launch_script``, ``image_uuid``, ``ctime``, ``mtime``,
    ``descriptors_total`` (48), ``descriptors_offset`` (4096), ``version`` ("01").
    Raises ValueError on more objects than descriptors.
    """
    head, placed = _layout(objects, **_options(**options))
    out = bytearray(head)
    for offset, obj in placed:
        out += b"\0" * (offset - len(out)) + obj.payload()
    return bytes(out)


def write_sif(path: Union[str, Path], objects: Sequence[SifObject] = (), **options: Any) -> Path:
    """Write a SIF file (options as :func:`build_sif`), streaming file payloads; its path."""
    target = Path(path)
    head, placed = _layout(objects, **_options(**options))
    with open(target, "wb") as out:
        out.write(head)
        for offset, obj in placed:
            out.write(b"\0" * (offset - out.tell()))
            if obj.path is not None:
                with open(obj.path, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            else:
                out.write(obj.data)
    return target


def wrap_squashfs_as_sif(
    squashfs_path: Union[str, Path], sif_path: Union[str, Path], arch: str = "amd64",
    overlays: Sequence[Union[str, Path]] = (),
) -> Path:
    """Write a SIF whose primary system partition is the squashfs image ``squashfs_path``.

    ``overlays`` are ext3 images added as overlay partitions of the same group, in order
    (the last one is the topmost, as ``apptainer overlay create`` stacks them).
    """
    objects = [partition(squashfs_path, sif.FS_SQUASHFS, sif.PART_PRIMSYS, arch)]
    objects += [partition(o, sif.FS_EXT3, sif.PART_OVERLAY, arch) for o in overlays]
    return write_sif(sif_path, objects, launch_script="#!/usr/bin/env run-singularity\n")

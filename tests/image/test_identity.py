"""image_identity: the cheap cache key equals what open_image and the full SIF reader give."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import List

import pytest

from helpers.sifwriter import SifObject, write_sif
from hpcrun.errors import ImageError
from hpcrun.image import sif
from hpcrun.image.open import _quick_sif_identity, _sif_identity, image_identity, open_image


def _sif_files(sif_data: Path) -> List[Path]:
    return sorted((sif_data / "images").glob("*.sif"))


def _full(path: Path) -> str:
    return _sif_identity(sif.read_sif(str(path)), os.stat(path))


def test_quick_identity_matches_the_full_reader_on_real_sifs(sif_data: Path) -> None:
    files = _sif_files(sif_data)
    assert files
    checked = 0
    for path in files:
        try:
            image = sif.read_sif(str(path))
        except ImageError:
            assert _quick_sif_identity(str(path), os.stat(path)) is None
            continue
        quick = _quick_sif_identity(str(path), os.stat(path))
        if image.primary_partition() is None:
            assert quick is None, path  # no container file system: the full path decides
            assert image_identity(str(path))[1] == _full(path)
            continue
        assert quick == _full(path), path
        assert image_identity(str(path)) == ("sif", quick)
        checked += 1
    assert checked >= 5


def test_quick_identity_with_overlays_groups_and_a_uuid(tmp_path: Path) -> None:
    def part(fstype: int, parttype: int, group: int, size: int) -> SifObject:
        return SifObject(sif.DATA_PARTITION, data=b"p" * size, group=group, alignment=4096,
                         partition=(fstype, parttype, "amd64"))

    objects = [
        SifObject(sif.DATA_LABELS, data=b'{"a": "b"}'),
        part(sif.FS_SQUASHFS, sif.PART_PRIMSYS, 1, 5000),
        part(sif.FS_EXT3, sif.PART_OVERLAY, 1, 700),
        part(sif.FS_EXT3, sif.PART_OVERLAY, 2, 800),  # another group: not used
        part(sif.FS_EXT3, sif.PART_OVERLAY, 1, 900),
        part(sif.FS_SQUASHFS, sif.PART_SYSTEM, 1, 100),
    ]
    path = write_sif(tmp_path / "layered.sif", objects,
                     image_uuid=uuid.UUID("12345678-9abc-def0-1234-56789abcdef0"))
    quick = _quick_sif_identity(str(path), os.stat(path))
    assert quick is not None and quick.startswith("sif:12345678-9abc-def0-1234-56789abcdef0:")
    assert quick == _full(path)
    assert image_identity(str(path)) == ("sif", quick)


def test_damaged_sif_falls_back_to_the_full_reader(tmp_path: Path, sif_data: Path) -> None:
    whole = (sif_data / "images" / "one-group.sif").read_bytes()
    cut = tmp_path / "cut.sif"
    cut.write_bytes(whole[: len(whole) - 10])  # the last object now ends past the file
    assert _quick_sif_identity(str(cut), os.stat(cut)) is None
    with pytest.raises(ImageError, match=r"cut\.sif"):
        image_identity(str(cut))
    old = tmp_path / "v02.sif"
    old.write_bytes(whole[:42] + b"02\0" + whole[45:])
    assert _quick_sif_identity(str(old), os.stat(old)) is None
    with pytest.raises(ImageError, match="version"):
        image_identity(str(old))


def test_identity_is_the_one_open_image_gives(sif_data: Path) -> None:
    path = sif_data / "images" / "one-group.sif"
    try:
        opened = open_image(str(path))
    except ImageError as error:  # a partition hpcrun cannot read: nothing to compare
        pytest.skip(error.message)
    assert image_identity(str(path)) == (opened.kind, opened.identity)

"""A corpus of real SIF files for the reader tests, written by real Apptainer.

Every file under ``images/`` is made by the ``apptainer`` program (1.4, installed by
``scripts/install-apptainer``): ``apptainer sif new`` / ``sif add`` for the structure
(partitions of each file system, groups, metadata objects of every data type the CLI can
add), ``apptainer sign`` for signatures (OpenPGP from ``apptainer key newpair`` in a private
keyring, and DSSE with a PEM key), ``apptainer build`` for a SIF as users get them.  Two
shapes Apptainer 1.4 cannot write any more are made with the project's writer
(``helpers.sifwriter``) and read back by Apptainer in the tests: a header launch script, and
the old ("legacy") signature layout over 4-byte dummy partitions.

What the tests expect of a file is what ``apptainer sif header|list|info|dump`` prints for
it, run live (``sif_tool``): the reader is checked against the reference reader itself.

Layout (names the tests use):

==================================  ==========================================================
``empty.sif``                       ``sif new``: no object
``empty-launch-script.sif``         writer: no object, a launch script in the header
``one-group.sif``                   group 1: raw partition (System, 386; 4 bytes), gzip
                                    squashfs (PrimSys, 386) holding ``/hello.txt``
``two-groups.sif``                  one-group + group 2: ext3 partition (System, amd64)
                                    holding ``/hello.txt``
``one-object-<kind>.sif``           one metadata object: generic-json, crypt-message, sbom,
                                    oci-root-index, oci-blob, deffile, labels, env
``{one-group,two-groups}-signed-{pgp,dsse}.sif``  ``apptainer sign``
``one-group-signed-legacy.sif``     writer: legacy signature over dummy partitions
``built.sif``                       ``apptainer build`` of a tiny root
==================================  ==========================================================
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

from helpers.sifwriter import SifObject, write_sif

HELLO = b"Hello from a SIF written by Apptainer!\n"
KEY_NAME = "hpcrun test signer"


class CorpusError(RuntimeError):
    """A tool the corpus needs is missing or failed."""


def _env(keys: Path) -> Dict[str, str]:
    """Apptainer's environment for the corpus: a private HOME and keyring, no remote."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPTAINER", "SINGULARITY"))}
    env.update(HOME=str(keys), APPTAINER_KEYSDIR=str(keys / "keys"),
               APPTAINER_CACHEDIR=str(keys / "cache"))
    return env


def _run(argv: List[str], env: Optional[Dict[str, str]] = None,
         cwd: Optional[Path] = None) -> str:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise CorpusError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}"
                          f"{proc.stderr}")
    return proc.stdout


def apptainer() -> str:
    """The ``apptainer`` program, or CorpusError."""
    found = shutil.which("apptainer")
    if found is None:
        raise CorpusError("apptainer is not installed (scripts/install-apptainer)")
    return found


def sif_tool(*args: str) -> str:
    """``apptainer sif ARGS`` (the reference SIF tool), its standard output."""
    return _run([apptainer(), "sif", *args])


def sif_dump(image: Path, object_id: int) -> bytes:
    """``apptainer sif dump ID IMAGE``: the object's bytes as Apptainer reads them."""
    proc = subprocess.run([apptainer(), "sif", "dump", str(object_id), str(image)],
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise CorpusError(f"apptainer sif dump {object_id} {image}: "
                          f"{proc.stderr.decode(errors='replace')}")
    return proc.stdout


def _add(image: Path, data: Path, datatype: int, *options: str) -> None:
    _run([apptainer(), "sif", "add", str(image), str(data), "--datatype", str(datatype),
          *options])


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _filesystems(work: Path) -> Dict[str, Path]:
    """A gzip squashfs and an ext3 image, each holding ``/hello.txt``."""
    root = work / "root"
    root.mkdir()
    (root / "hello.txt").write_bytes(HELLO)
    squashfs = work / "hello.sqfs"
    _run(["mksquashfs", str(root), str(squashfs), "-noappend", "-quiet", "-no-progress",
          "-all-root", "-comp", "gzip"])
    ext3 = work / "hello.ext3"
    mke2fs = shutil.which("mke2fs") or "/usr/sbin/mke2fs"
    _run([mke2fs, "-q", "-F", "-t", "ext3", "-d", str(root), "-E", "root_owner=0:0",
          str(ext3), "256k"])
    return {"squashfs": squashfs, "ext3": ext3}


def _one_group(image: Path, fs: Dict[str, Path], work: Path) -> None:
    _run([apptainer(), "sif", "new", str(image)])
    _add(image, _file(work / "raw.bin", b"\xfa\xce\xfe\xed"), 4, "--parttype", "1",
         "--partfs", "4", "--partarch", "1", "--groupid", "1")
    _add(image, fs["squashfs"], 4, "--parttype", "2", "--partfs", "1", "--partarch", "1",
         "--groupid", "1")


# (file stem, data type, extra `sif add` options, contents)
OBJECTS = [
    ("generic-json", 6, [], b'{"hello": "world"}'),
    ("crypt-message", 8, [], b"not really encrypted"),
    ("sbom", 9, ["--sbomformat", "spdx-json"], b'{"spdxVersion": "SPDX-2.3"}'),
    ("oci-root-index", 10, [], b'{"schemaVersion": 2, "manifests": []}'),
    ("oci-blob", 11, [], b'{"architecture": "amd64"}'),
    ("deffile", 1, [], b"Bootstrap: scratch\n"),
    ("labels", 3, [], b'{"org.example.label": "one"}'),
    ("env", 2, [], b"export FROM_SIF_OBJECT=1\n"),
]


def build_corpus(dest: Path) -> Path:
    """Write the corpus into ``dest/images`` (``dest`` must not exist); returns ``dest``."""
    images = dest / "images"
    work = dest / "work"
    keys = dest / "keys"
    for directory in (images, work, keys):
        directory.mkdir(parents=True)
    keys.chmod(0o700)
    env = _env(keys)
    fs = _filesystems(work)

    _run([apptainer(), "sif", "new", str(images / "empty.sif")])
    write_sif(images / "empty-launch-script.sif", [],
              launch_script="#!/usr/bin/env run-singularity\n")

    _one_group(images / "one-group.sif", fs, work)
    _one_group(images / "two-groups.sif", fs, work)
    _add(images / "two-groups.sif", fs["ext3"], 4, "--parttype", "1", "--partfs", "2",
         "--partarch", "2", "--groupid", "2")

    for stem, datatype, options, data in OBJECTS:
        image = images / f"one-object-{stem}.sif"
        _run([apptainer(), "sif", "new", str(image)])
        _add(image, _file(work / f"{stem}.bin", data), datatype, "--groupid", "1", *options)

    # Signatures: OpenPGP (a fresh key pair in the private keyring, no passphrase) and DSSE.
    _run([apptainer(), "key", "newpair", "--name", KEY_NAME, "--email", "test@example.org",
          "--comment", "hpcrun tests", "--password", "", "--push=false"], env)
    pem = work / "signer.pem"
    _run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem)])
    for base in ("one-group", "two-groups"):
        for kind, options in (("pgp", ["--keyidx", "0"]), ("dsse", ["--key", str(pem)])):
            signed = images / f"{base}-signed-{kind}.sif"
            shutil.copy(images / f"{base}.sif", signed)
            _run([apptainer(), "sign", *options, str(signed)], env)

    # The legacy layout (Singularity < 3.6): one signature per object, 4-byte partitions.
    dummy = b"\x00\x01\x02\x03"
    write_sif(images / "one-group-signed-legacy.sif", [
        SifObject(4, dummy, group=1, partition=(4, 1, "386")),
        SifObject(4, dummy, group=1, partition=(1, 2, "386")),
        SifObject(5, b"-----BEGIN PGP SIGNED MESSAGE-----\n", group=0, link=2,
                  signature=(1, bytes(range(20)))),
    ])

    root = work / "built-root"
    (root / "etc").mkdir(parents=True)
    (root / "hello.txt").write_bytes(HELLO)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    _run([apptainer(), "-q", "build", str(images / "built.sif"), str(root)], env)
    shutil.rmtree(work)
    return dest

"""Fuzz hpcrun's own readers of hostile bytes for a fixed time each (not run in CI).

    python benchmarks/fuzz_readers.py [--seconds 600] [--only sif,squashfs,...]

Targets: the SIF reader, the squashfs and ext3 file-system readers, the ELF reader (and the
MPI classifier on top of it), the ld.so.cache parser and the site-profile (TOML) loader.
Each starts from real, valid inputs made here (``mksquashfs``, ``mke2fs -d``, ``ldconfig``,
the host's own ELF libraries, the bundled profiles, the SIF files of ``../shared``) and lets
hypothesis mutate them: bytes overwritten (biased towards where the structure lives), runs
inserted or deleted, truncation; the TOML target also gets generated documents.

What counts: *inputs tried*; *foreign exceptions*: anything but ``HpcrunError`` escaping a
reader (a traceback a user would see); *hangs*: an input that takes longer than
``--hang`` seconds (default 10; every valid input takes milliseconds).  Each finding is
saved under ``benchmarks/out/fuzz/`` with its traceback.  Prints one Markdown row per
target, the form the README's table has.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "adapter"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.reporting import with_reporter  # noqa: E402

from hpcrun.errors import HpcrunError  # noqa: E402

OUT = HERE / "out" / "fuzz"
LIBDIR = "/usr/lib/x86_64-linux-gnu"


Target = Callable[[bytes, str], None]


class _Hang(BaseException):
    """Raised by the alarm inside a reader that took too long."""


class _Done(BaseException):
    """Raised when a target's time is up (stops hypothesis without a failure)."""


# ---- seeds: real, valid inputs -------------------------------------------------------------

def _small_elves(count: int = 6) -> List[bytes]:
    found = []
    for name in sorted(os.listdir(LIBDIR)):
        path = os.path.join(LIBDIR, name)
        if ".so" in name and os.path.isfile(path) and not os.path.islink(path):
            with open(path, "rb") as stream:
                if stream.read(4) == b"\x7fELF" and os.path.getsize(path) < 96 * 1024:
                    found.append((os.path.getsize(path), path))
    chosen = [p for _, p in sorted(found)[:count]]
    chosen.append(os.path.realpath("/bin/dash"))
    return [Path(p).read_bytes() for p in chosen]


def _tree(root: Path) -> Path:
    """A small root file system: libraries, symlinks (relative, absolute, looping), a
    directory of many entries (indexed directories), files of several sizes."""
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    for name in ("libz.so.1", "libmunge.so.2", "libc.so.6"):
        source = Path(LIBDIR) / name
        if source.exists():
            shutil.copy(os.path.realpath(source), lib / name)
    os.symlink("usr/lib", root / "lib")
    os.symlink("/usr/lib/x86_64-linux-gnu/libz.so.1", root / "link-abs")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("fuzz\n")
    (root / "etc/ld.so.conf").write_text(LIBDIR + "\n")
    many = root / "usr/share/many"
    many.mkdir(parents=True)
    for i in range(300):
        (many / f"f-{i:03d}").write_text(str(i) * (i % 9))
    (root / "big").write_bytes(os.urandom(300_000))
    return root


def _squashfs_seeds(work: Path) -> List[bytes]:
    root = _tree(work / "sqroot")
    out = []
    for i, options in enumerate((["-comp", "gzip", "-b", "4096"], ["-noI", "-b", "4096"],
                                 ["-comp", "xz"], ["-comp", "lz4", "-b", "8192"],
                                 ["-comp", "zstd"], ["-comp", "lzo"])):
        image = work / f"s{i}.sqfs"
        done = subprocess.run(["mksquashfs", str(root), str(image), "-noappend", "-quiet",
                               "-no-progress", *options], capture_output=True)
        if done.returncode == 0:
            out.append(image.read_bytes())
    return out


def _ext3_seeds(work: Path) -> List[bytes]:
    root = _tree(work / "extroot")
    out = []
    for i, options in enumerate((["-t", "ext3"], ["-t", "ext2", "-b", "1024"],
                                 ["-t", "ext4", "-O", "64bit,metadata_csum"])):
        image = work / f"e{i}.img"
        done = subprocess.run(["mke2fs", "-q", "-F", *options, "-d", str(root), str(image),
                               "4M"], capture_output=True)
        if done.returncode == 0:
            out.append(image.read_bytes())
    return out


def _ldcache_seeds(work: Path) -> List[bytes]:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    root = work / "ldroot"
    lib = root / LIBDIR.lstrip("/")
    lib.mkdir(parents=True)
    for name in ("libc.so.6", "libz.so.1", "libm.so.6"):
        shutil.copy(os.path.realpath(os.path.join(LIBDIR, name)), lib / name)
    (root / "etc").mkdir()
    (root / "etc/ld.so.conf").write_text(LIBDIR + "\n")
    out = []
    for fmt in ("old", "compat", "new"):
        subprocess.run([ldconfig, "-X", "-c", fmt, "-r", str(root), "-C", f"/etc/c.{fmt}"],
                       check=True, capture_output=True)
        out.append((root / "etc" / f"c.{fmt}").read_bytes())
    return out


def _sif_seeds() -> List[bytes]:
    images = REPO.parent / "shared" / "data" / "sif" / "images"
    names = ("one-group.sif", "two-groups.sif", "one-group-signed-pgp.sif",
             "one-object-sbom.sif", "empty.sif")
    return [(images / n).read_bytes() for n in names if (images / n).exists()]


def _toml_seeds() -> List[bytes]:
    folder = REPO / "adapter" / "hpcrun" / "data" / "site-profiles"
    return [p.read_bytes() for p in sorted(folder.glob("*.toml"))]


# ---- what each reader is asked to do ---------------------------------------------------------

def _each(call: Callable[[], object]) -> None:
    """One reader operation; a refusal (HpcrunError) ends that operation, not the input."""
    try:
        call()
    except HpcrunError:
        pass


def _walk(tree: object, limit: int = 150) -> None:
    """List, look up and read what the tree holds, then the paths a launch resolves."""
    from hpcrun.image.fs import DIR, FILE

    t: Any = tree
    seen = 0
    stack = ["/"]
    while stack and seen < limit:
        path = stack.pop()
        try:
            names = t.listdir(path)[:40]
        except HpcrunError:
            continue
        for name in names:
            seen += 1
            child = path.rstrip("/") + "/" + name
            try:
                node = t.lookup(child, follow=False)
            except HpcrunError:
                continue
            if node is not None and node.kind == DIR:
                stack.append(child)
            elif node is not None and node.kind == FILE:
                tail = max(0, node.size - 300)
                _each(lambda c=child: t.read(c, 0, 5000))  # type: ignore[misc]
                _each(lambda c=child, at=tail: t.read(c, at, 600))  # type: ignore[misc]
    for inner in ("/lib/x86_64-linux-gnu/libz.so.1", "/link-abs", "/loop-a", "/etc/hostname",
                  "/usr/share/many/f-123", "/big/../etc"):
        _each(lambda p=inner: t.realpath(p))  # type: ignore[misc]
        _each(lambda p=inner: t.lookup(p))  # type: ignore[misc]


def _file_reader(kind: str) -> Callable[[bytes, str], None]:
    def run(data: bytes, scratch: str) -> None:
        from hpcrun.image.fs import Tree

        with open(scratch, "wb") as stream:
            stream.write(data)
        if kind == "squashfs":
            from hpcrun.image.squashfs import SquashfsBackend as Backend
        else:
            from hpcrun.image.ext3 import Ext3Backend as Backend  # type: ignore[assignment]
        backend = Backend(scratch)
        try:
            _walk(Tree(backend))
        finally:
            backend.close()
    return run


def _sif(data: bytes, scratch: str) -> None:
    from hpcrun.image.open import open_image
    from hpcrun.image.sif import read_sif

    with open(scratch, "wb") as stream:
        stream.write(data)
    try:
        image = read_sif(scratch)
        for descriptor in image.descriptors:
            image.read_object(descriptor, 4096)
    except HpcrunError:
        pass
    opened = open_image(scratch)
    try:
        _walk(opened.tree)
    finally:
        close = getattr(opened, "close", None)
        if close is not None:
            close()


def _elf(data: bytes, scratch: str) -> None:
    from hpcrun.elf.mpi import classify_mpi
    from hpcrun.elf.reader import (
        dynamic_symbols,
        dynamic_symbols_split,
        find_strings,
        read_elf,
        static_symbols,
    )

    for call in (lambda s: read_elf(s, "fuzz.so"), lambda s: dynamic_symbols(s, "fuzz.so"),
                 lambda s: dynamic_symbols_split(s, "fuzz.so"),
                 lambda s: static_symbols(s, "fuzz.so"),
                 lambda s: find_strings(s, ["MPICH Version:", "GLIBC"], "fuzz.so")):
        try:
            call(io.BytesIO(data))
        except HpcrunError:
            pass
    info = read_elf(io.BytesIO(data), "libmpi.so.12")
    classify_mpi("libmpi.so.12", "/x/libmpi.so.12", info, lambda: io.BytesIO(data))


def _ldcache(data: bytes, scratch: str) -> None:
    from hpcrun.elf.ldcache import cache_for_architecture, parse_ld_cache

    entries = parse_ld_cache(data, "/fuzz/ld.so.cache")
    cache_for_architecture(entries, "x86_64")


def _toml(data: bytes, scratch: str) -> None:
    from hpcrun.profiles.load import loads_profile

    loads_profile(data.decode("utf-8", "surrogateescape"), "/fuzz/site.toml")


# ---- mutation -------------------------------------------------------------------------------

@st.composite
def _mutated(draw: st.DrawFn, seeds: List[bytes], head: int) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    size = max(1, len(data))
    spot = st.one_of(st.integers(0, min(size, head) - 1), st.integers(0, size - 1))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(("byte", "byte", "word", "run", "delete", "insert")))
        at = draw(spot) % max(1, len(data))
        if kind == "byte" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "word" and data:
            value = draw(st.sampled_from((0, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1, 0xFFFF)))
            data[at:at + 4] = value.to_bytes(4, "little")
        elif kind == "run":
            data[at:at + 16] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    if draw(st.integers(0, 7)) == 0:
        del data[draw(st.integers(0, size)):]
    return bytes(data)


_TOML_WORDS = st.sampled_from([
    "schema = 1", "name = \"x\"", "[mpi]", "family = \"mpich\"", "[[libraries]]",
    "[[binds]]", "source = \"/usr\"", "destination = \"/x\"", "[runtime]", "kind = \"auto\"",
    "[launchers.srun]", "options = [\"--mpi=pmi2\"]", "[env]", "[[env.set]]", "a = [[[[1]]]]",
    "x = {a = {b = {c = 1}}}", "path = \"/lib\\u0000\"", "= 1", "[[", "\"\"\"", "'", "\n",
])


def _toml_documents() -> st.SearchStrategy[bytes]:
    generated = st.lists(st.one_of(_TOML_WORDS, st.text(max_size=12)), max_size=20).map(
        lambda parts: "\n".join(parts).encode("utf-8", "surrogateescape"))
    nested = st.integers(1, 50_000).map(lambda n: b"a = " + b"[" * n + b"]" * n)
    return st.one_of(generated, nested)


# ---- the loop -------------------------------------------------------------------------------

def fuzz(name: str, target: Callable[[bytes, str], None], inputs: st.SearchStrategy[bytes],
         seconds: float, hang: int, scratch: str) -> Dict[str, object]:
    counts = {"tried": 0, "foreign": 0, "hangs": 0, "hpcrun_errors": 0}
    OUT.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + seconds
    findings: List[str] = []

    def on_alarm(signum: int, frame: object) -> None:
        raise _Hang()

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(max_examples=10 ** 9, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(inputs)
    def one(data: bytes) -> None:
        if time.monotonic() > deadline:
            raise _Done()
        counts["tried"] += 1
        signal.alarm(hang)
        try:
            target(data, scratch)
        except HpcrunError as error:
            counts["hpcrun_errors"] += 1
            if "\n" in error.message:
                record("multiline", data, f"message over several lines: {error.message!r}")
        except _Hang:
            counts["hangs"] += 1
            record("hang", data, f"took over {hang} s")
        except RecursionError:
            counts["foreign"] += 1
            record("foreign", data, traceback.format_exc())
        except Exception:
            counts["foreign"] += 1
            record("foreign", data, traceback.format_exc())
        finally:
            signal.alarm(0)

    def record(kind: str, data: bytes, text: str) -> None:
        number = len(findings)
        if number < 50:
            stem = OUT / f"{name}-{kind}-{number}"
            stem.with_suffix(".bin").write_bytes(data)
            stem.with_suffix(".txt").write_text(text)
        findings.append(text.strip().splitlines()[-1] if text.strip() else kind)

    started = time.monotonic()
    with with_reporter(lambda text: None):  # no "reproduce with @seed" for the stop signal
        while time.monotonic() < deadline:  # hypothesis may stop on its own: start it again
            try:
                one()
            except _Done:
                break
            except Exception:  # hypothesis itself gave up (e.g. a strategy's health check)
                print(traceback.format_exc().strip().splitlines()[-1], file=sys.stderr)
    counts["seconds"] = round(time.monotonic() - started)
    counts["kinds"] = sorted(set(findings))[:10]  # type: ignore[assignment]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--hang", type=int, default=10)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    with tempfile.TemporaryDirectory(prefix="hpcrun-fuzz-") as tmp:
        work = Path(tmp)
        scratch = str(work / "input")
        targets: Dict[str, Tuple[Target, Callable[[], st.SearchStrategy[bytes]]]] = {
            "sif": (_sif, lambda: _mutated(_sif_seeds(), 8192)),
            "squashfs": (_file_reader("squashfs"), lambda: _mutated(_squashfs_seeds(work), 96)),
            "ext3": (_file_reader("ext3"), lambda: _mutated(_ext3_seeds(work), 8192)),
            "elf": (_elf, lambda: _mutated(_small_elves(), 4096)),
            "ld.so.cache": (_ldcache, lambda: _mutated(_ldcache_seeds(work), 4096)),
            "toml": (_toml, lambda: st.one_of(_mutated(_toml_seeds(), 1 << 20),
                                              _toml_documents())),
        }
        chosen = [t for t in args.only.split(",") if t] or list(targets)
        print("| reader | seconds | inputs tried | refused (HpcrunError) | foreign exceptions "
              "| hangs |")
        print("|---|---|---|---|---|---|")
        failed = False
        for name in chosen:
            target, strategy = targets[name]
            counts = fuzz(name, target, strategy(), args.seconds, args.hang, scratch)
            print(f"| {name} | {counts['seconds']} | {counts['tried']} | "
                  f"{counts['hpcrun_errors']} | {counts['foreign']} | {counts['hangs']} |",
                  flush=True)
            if counts["kinds"]:
                print(f"  findings ({name}): {counts['kinds']}", flush=True)
            failed = failed or bool(counts["foreign"] or counts["hangs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

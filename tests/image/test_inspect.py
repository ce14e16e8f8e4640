"""Image facts from real image trees: sandbox, squashfs and SIF forms of the same root."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict

import pytest

from helpers.inspect_trees import INTEL_DIR, MissingTool, mini_roots
from hpcrun import records
from hpcrun.image.facts import FACTS_VERSION, RECORDS, ImageFacts
from hpcrun.image.fs import Tree
from hpcrun.image.inspect import cache_key, inspect_image, inspect_tree
from hpcrun.image.sandbox import SandboxBackend
from hpcrun.image.serialize import facts_from_json, facts_to_json


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, mpi_wheel) -> Dict[str, Path]:
    if shutil.which("ldconfig") is None and not Path("/sbin/ldconfig").exists():
        pytest.skip("ldconfig not installed")
    try:
        return mini_roots(str(tmp_path_factory.getbasetemp()), str(mpi_wheel("impi_rt")))
    except MissingTool as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def squashfs_of_cached(roots: Dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.images import ImageBuildError, make_squashfs, write_sif

    try:
        sqfs = make_squashfs(roots["cached"], tmp_path_factory.mktemp("sq") / "mini.sqfs")
        write_sif(sqfs, sqfs.with_suffix(".sif"))
    except ImageBuildError as error:
        pytest.skip(str(error))
    return sqfs


def _tree_facts(root: Path, **kwargs) -> ImageFacts:
    env = (("LD_LIBRARY_PATH", INTEL_DIR),)
    return inspect_tree(
        Tree(SandboxBackend(str(root))), source=str(root), kind="sandbox", environment=env, **kwargs
    )


def test_basic_facts(roots: Dict[str, Path]) -> None:
    facts = _tree_facts(roots["cached"])
    assert facts.architecture == "x86_64"
    assert facts.libc.kind == "glibc" and facts.libc.version == "2.36"
    assert "/usr/lib/x86_64-linux-gnu" in facts.library_dirs
    cache = dict(facts.ld_cache)
    assert {"libmpich.so.12", "libmpi.so.40", "libc.so.6", "libstdc++.so.6"} <= set(cache)
    assert facts.warnings == ()


def test_mpi_libraries(roots: Dict[str, Path]) -> None:
    facts = _tree_facts(roots["cached"])
    by_name = {m.soname: m for m in facts.mpi}
    mpich = by_name["libmpich.so.12"]
    assert (mpich.family, mpich.role, mpich.implementation, mpich.version) == (
        "mpich",
        "c",
        "MPICH",
        "4.0.2",
    )
    assert mpich.real_path == "/usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2"
    ompi = by_name["libmpi.so.40"]
    assert (ompi.family, ompi.version) == ("openmpi", "4.1.4")
    assert by_name["libmpichfort.so.12"].role == "fortran"
    assert by_name["libmpi_mpifh.so.40"].family == "openmpi"
    # Intel MPI is not in the cache: found through the image's LD_LIBRARY_PATH
    intel = [m for m in facts.mpi if m.path.startswith(INTEL_DIR)]
    assert intel and intel[0].implementation == "Intel MPI" and intel[0].version == "2021.19.0"
    assert len({(m.soname, m.real_path) for m in facts.mpi}) == len(facts.mpi)


def test_version_definitions(roots: Dict[str, Path]) -> None:
    facts = _tree_facts(roots["cached"])
    defs = {d.soname: d.versions for d in facts.version_defs}
    assert "GLIBC_2.34" in defs["libc.so.6"]
    assert "GLIBCXX_3.4.30" in defs["libstdc++.so.6"]
    assert any(v.startswith("GFORTRAN_") for v in defs["libgfortran.so.5"])
    assert "GCC_3.0" in defs["libgcc_s.so.1"]
    assert "libquadmath.so.0" in defs and "libm.so.6" in defs


def test_without_ld_cache_scans_with_a_warning(roots: Dict[str, Path]) -> None:
    cached = _tree_facts(roots["cached"])
    scanned = _tree_facts(roots["nocache"])
    assert scanned.ld_cache == ()
    assert any("ld.so.cache" in w for w in scanned.warnings)
    assert scanned.libc == cached.libc
    assert {(m.soname, m.family, m.version) for m in scanned.mpi} == {
        (m.soname, m.family, m.version) for m in cached.mpi
    }
    assert {d.soname for d in scanned.version_defs} == {d.soname for d in cached.version_defs}


def test_corrupt_ld_cache_is_a_warning(roots: Dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(roots["cached"], root, symlinks=True)
    cache = root / "etc/ld.so.cache"
    cache.write_bytes(cache.read_bytes()[:100])
    facts = _tree_facts(root)
    assert any("/etc/ld.so.cache" in w and "corrupt" in w for w in facts.warnings)
    assert facts.libc.version == "2.36"


def test_rocm_and_cuda_markers(roots: Dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(roots["cached"], root, symlinks=True)
    assert _tree_facts(root).rocm == ""
    (root / "opt/rocm-6.0.2/lib").mkdir(parents=True)
    (root / "opt/rocm").symlink_to("rocm-6.0.2")
    facts = inspect_tree(
        Tree(SandboxBackend(str(root))),
        source="x",
        kind="sandbox",
        environment=(("CUDA_VERSION", "12.2.0"), ("NVIDIA_REQUIRE_CUDA", "cuda>=12.2")),
    )
    assert facts.rocm == "6.0.2"
    assert facts.cuda_runtime == "12.2"  # from the image's CUDA_VERSION: no libcudart here
    assert facts.env("NVIDIA_REQUIRE_CUDA") == "cuda>=12.2"


def test_json_round_trip_and_strictness(roots: Dict[str, Path]) -> None:
    facts = _tree_facts(roots["cached"], app=["python3", "/opt/scripts/hello.py"])
    data = json.loads(json.dumps(facts_to_json(facts)))
    assert data["version"] == FACTS_VERSION
    assert facts_from_json(data) == facts
    assert facts_from_json({**data, "version": FACTS_VERSION + 1}) is None
    assert facts_from_json({**data, "extra": 1}) is None
    missing = dict(data)
    del missing["libc"]
    assert facts_from_json(missing) is None
    assert facts_from_json({**data, "mpi": [{"soname": 3}]}) is None
    assert facts_from_json("nonsense") is None


def test_inspect_image_sandbox_squashfs_sif_agree(
    roots: Dict[str, Path], squashfs_of_cached: Path
) -> None:
    sandbox = inspect_image(str(roots["cached"]), app=["hello_mpich"], use_cache=False)
    assert sandbox.kind == "sandbox"
    assert sandbox.env("LD_LIBRARY_PATH") == INTEL_DIR
    assert sandbox.app is not None and sandbox.app.mpi_family == "mpich"
    for image, kind in (
        (squashfs_of_cached, "squashfs"),
        (squashfs_of_cached.with_suffix(".sif"), "sif"),
    ):
        other = inspect_image(str(image), app=["hello_mpich"], use_cache=False)
        assert other.kind == kind
        for field in ("architecture", "libc", "ld_cache", "mpi", "version_defs", "app"):
            assert getattr(other, field) == getattr(sandbox, field), (kind, field)


def test_real_sif_files(sif_data: Path) -> None:
    # A 386 squashfs holding only /hello.txt (apptainer sif new + sif add).
    image = sif_data / "images" / "one-group.sif"
    facts = inspect_image(str(image), app=["/hello.txt"], use_cache=False)
    assert (facts.kind, facts.architecture) == ("sif", "i686")  # from the SIF header
    assert facts.libc.kind == "unknown" and facts.mpi == () and facts.ld_cache == ()
    assert facts.app is not None and facts.app.kind == "unknown" and facts.app.warnings
    assert facts_from_json(json.loads(json.dumps(facts_to_json(facts)))) == facts


def test_cache_key_changes_with_app_and_identity() -> None:
    assert cache_key("a", None) != cache_key("a", ["x"])
    assert cache_key("a", ["x"]) != cache_key("b", ["x"])
    assert cache_key("a", ["x"]) == cache_key("a", ["x"])
    assert cache_key("a", ["x"], "/old/app.sif") != cache_key("a", ["x"], "/new/app.sif")


def test_facts_cache_is_used_and_invalidated(
    roots: Dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from hpcrun.image.cache import FactsCache
    from hpcrun.image.open import open_image

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = roots["cached"]
    first = inspect_image(str(root), app=["hello_mpich"])
    cache = FactsCache(tmp_path / "cache" / "hpcrun")
    key = cache_key(open_image(str(root)).identity, ["hello_mpich"], str(root))
    entry = cache.get(key)
    assert entry is not None and records.decode(entry["record"], RECORDS) == first
    assert entry["dependencies"]  # a sandbox records what it read
    # A marked entry proves the next call reads the cache instead of the image.
    entry["record"] = records.encode(records.replace(first, architecture="marked"))
    cache.put(key, entry)
    assert inspect_image(str(root), app=["hello_mpich"]).architecture == "marked"
    assert inspect_image(str(root), app=["hello_mpich"], use_cache=False).architecture == "x86_64"
    # An entry whose records do not have this version's fields is ignored.
    values = entry["record"]["ImageFacts"]
    cache.put(key, dict(entry, record={"ImageFacts": values[:-1]}))
    assert inspect_image(str(root), app=["hello_mpich"]).architecture == "x86_64"
    cache.put(key, dict(entry, record={"Unknown": values}))
    assert inspect_image(str(root), app=["hello_mpich"]).architecture == "x86_64"
    # Records with other fields make another key: an older hpcrun's entries are never read.
    import hpcrun.image.inspect as inspect_module

    @records.record
    class Libc:
        family: str
        version: str
        added: str = ""

    monkeypatch.setattr(inspect_module, "RECORDS", dict(RECORDS, Libc=Libc))
    assert cache_key(open_image(str(root)).identity, ["hello_mpich"], str(root)) != key
    # A file the facts were read from changes: the sandbox entry no longer holds.
    cache.put(key, entry)
    ld_cache = root / "etc" / "ld.so.cache"
    st = ld_cache.stat()
    os.utime(ld_cache, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert inspect_image(str(root), app=["hello_mpich"]).architecture == "x86_64"


def test_inspect_text_is_kept_in_the_cache_and_served_without_decoding(
    roots: Dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcrun.image import inspect as inspect_module
    from hpcrun.image.cache import FactsCache
    from hpcrun.image.open import open_image

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = roots["cached"]
    cache = FactsCache(tmp_path / "cache" / "hpcrun")
    key = cache_key(open_image(str(root)).identity, ["hello_mpich"], str(root))
    # A launch stores the facts only; the first inspect --json adds its text to the entry.
    facts = inspect_image(str(root), app=["hello_mpich"])
    assert cache.get_text(key) is None
    text = inspect_module.inspect_image_text(str(root), app=["hello_mpich"])
    assert json.loads(text) == facts_to_json(facts) and text == inspect_module.facts_text(facts)
    assert cache.get_text(key) == text

    def no_decoding(*_: object) -> None:
        raise AssertionError("the facts were decoded")

    monkeypatch.setattr(records, "decode", no_decoding)
    assert inspect_module.inspect_image_text(str(root), app=["hello_mpich"]) == text
    monkeypatch.undo()
    # A sandbox's text is served only while the files its facts were read from are unchanged.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache.put_text(key, "marked\n")
    assert inspect_module.inspect_image_text(str(root), app=["hello_mpich"]) == "marked\n"
    ld_cache = root / "etc" / "ld.so.cache"
    st = ld_cache.stat()
    os.utime(ld_cache, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert inspect_module.inspect_image_text(str(root), app=["hello_mpich"]) == text
    # Cold, with the cache off: the same text, and nothing stored.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    assert inspect_module.inspect_image_text(str(root), app=["hello_mpich"],
                                             use_cache=False) == text
    assert not (tmp_path / "other").exists()


def test_a_file_image_text_hit_reads_no_json(sif_data: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """For SIF and squashfs files the key (their identity) is the whole check."""
    from hpcrun.image import inspect as inspect_module
    from hpcrun.image.cache import FactsCache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    image = str(sif_data / "images" / "one-group.sif")
    text = inspect_module.inspect_image_text(image)

    def no_json(*_: object) -> None:
        raise AssertionError("the JSON entry was read")

    monkeypatch.setattr(FactsCache, "get", no_json)
    assert inspect_module.inspect_image_text(image) == text
    assert json.loads(text)["kind"] == "sif"

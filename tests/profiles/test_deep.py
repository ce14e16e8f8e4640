"""`hpcrun site validate --deep`: closure, MPI identity and run-time providers.

Fake host trees hold REAL Debian libraries (MPICH 4.0.2 and its dependencies, Open MPI
4.1.4, UCX modules, an rdma-core verbs provider and the real ``*.driver`` files) copied
with their symbolic links, with ``etc/ld.so.conf`` and a cache from the real ``ldconfig -r``.
Expected values come from independent sources: ``mpichversion`` / ``ompi_info`` for the
versions, pyelftools for DT_NEEDED, ``os.path.realpath`` for module files.
"""

from __future__ import annotations

import os
import posixpath
import pty
import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import pytest

from helpers.mpi_trees import (
    HostSite,
    copy_host_file,
    fill_missing,
    wheel_mpich_host,
    write_ld_config,
)
from hpcrun.plan.model import Diagnostic
from hpcrun.profiles.model import BindSpec, Container, Library, Mpi, Profile
from hpcrun.profiles.validate import (
    deep_checks,
    driver_names,
    library_file_checks,
    versions_agree,
)
from hpcrun.resolve.hostlibs import is_glibc_family

from .conftest import LIBDIR, MPICH_LIB, OPENMPI_LIB, copy_into, need

MPICH_LIBS = (MPICH_LIB, f"{LIBDIR}/libmpichfort.so.12", f"{LIBDIR}/libmpichcxx.so.12")
UCX_DIR = f"{LIBDIR}/ucx"
VERBS_DIR = f"{LIBDIR}/libibverbs"
VERBS_CONF = "/etc/libibverbs.d"
UCX_GLOB = f"{UCX_DIR}/libuct_*.so*"


def codes(findings: Sequence[Diagnostic], severity: str = "") -> List[str]:
    return [f"{f.source} {f.code}" for f in findings if not severity or f.severity == severity]


def errors(findings: Sequence[Diagnostic]) -> List[Diagnostic]:
    return [f for f in findings if f.severity == "error"]


def mpich_version() -> str:
    """The Debian MPICH version as its own ``mpichversion`` prints it."""
    if not shutil.which("mpichversion"):
        pytest.skip("mpichversion is not installed")
    out = subprocess.run(["mpichversion"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"MPICH Version:\s*(\S+)", out)
    assert match, out
    return match.group(1)


def openmpi_version() -> str:
    """The Debian Open MPI version as ``ompi_info --version`` prints it."""
    if not shutil.which("ompi_info"):
        pytest.skip("ompi_info is not installed")
    out = subprocess.run(["ompi_info", "--version"], capture_output=True, text=True,
                         check=True).stdout
    match = re.search(r"Open MPI v(\S+)", out)
    assert match, out
    return match.group(1)


def needed_of(path: Path) -> Tuple[str, ...]:
    """DT_NEEDED of a real file, read with pyelftools (not hpcrun's reader)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        try:
            elf = ELFFile(stream)
        except Exception:  # not ELF (a .a archive, a text file)
            return ()
        out: List[str] = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                out += [t.needed for t in section.iter_tags()  # type: ignore[attr-defined]
                        if t.entry.d_tag == "DT_NEEDED"]
        return tuple(out)


# --- trees ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mpich_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian MPICH, every library it and the UCX modules need, the mlx5 verbs provider,
    and the real mlx5/mlx4 driver files (the mlx4 provider left out): built once."""
    need(*MPICH_LIBS, UCX_DIR, f"{VERBS_CONF}/mlx5.driver", f"{VERBS_CONF}/mlx4.driver",
         f"{VERBS_DIR}/libmlx5-rdmav34.so")
    root = tmp_path_factory.mktemp("deep-mpich") / "root"
    root.mkdir()
    os.symlink("usr/lib", root / "lib")  # merged /usr, as on Debian 12 and RHEL 8
    for lib in MPICH_LIBS:
        copy_host_file(root, lib)
    modules = [f"{UCX_DIR}/{n}" for n in sorted(os.listdir(UCX_DIR)) if ".so" in n]
    for module in modules:
        copy_host_file(root, module)
    copy_host_file(root, f"{VERBS_DIR}/libmlx5-rdmav34.so")
    copy_into(root, [f"{VERBS_CONF}/mlx5.driver", f"{VERBS_CONF}/mlx4.driver"])
    write_ld_config(root, [LIBDIR], cache=False)
    # Two closures: loaded as a root, the provider would hide its soname (libmlx5.so.1)
    # from the UCX modules' closure.
    fill_missing(root, [*MPICH_LIBS, *(m for m in modules if m.endswith(".so.0"))])
    fill_missing(root, [f"{VERBS_DIR}/libmlx5-rdmav34.so"])
    write_ld_config(root, [LIBDIR])
    return root


def clone(base: Path, tmp_path: Path) -> Path:
    """A private copy of a session tree (hard links: cheap; files are only removed)."""
    root = tmp_path / "root"
    shutil.copytree(base, root, symlinks=True, copy_function=os.link)
    return root


def remove_library(root: Path, name: str) -> None:
    """Delete ``name`` from the tree's library directory with the file it links to."""
    where = root / LIBDIR.lstrip("/") / name
    target = Path(os.path.realpath(where))
    where.unlink()
    if target.exists() and str(target).startswith(str(root)):
        target.unlink()
    write_ld_config(root, [LIBDIR])


def mpich_profile(version: str, **mpi_changes: object) -> Profile:
    values: Dict[str, object] = dict(
        family="mpich", implementation="MPICH", version=version, libraries=MPICH_LIBS,
        library_dirs=(LIBDIR,), sonames=("libmpich.so.12",), fortran=("libmpichfort.so.12",),
        cxx=("libmpichcxx.so.12",))
    values.update(mpi_changes)
    return Profile(schema=1, name="deep-mpich", mpi=Mpi(**values),  # type: ignore[arg-type]
                   libraries=(Library(path=UCX_GLOB),))


def with_(profile: Profile, **changes: object) -> Profile:
    from hpcrun.records import replace

    return replace(profile, **changes)  # type: ignore[arg-type]


# --- a complete tree -------------------------------------------------------------------------


def test_complete_mpich_tree_is_clean(mpich_base: Path) -> None:
    profile = mpich_profile(mpich_version())
    assert library_file_checks(profile, mpich_base) == []
    assert deep_checks(profile, mpich_base) == []


def test_wrong_architecture_is_still_reported(mpich_base: Path) -> None:
    found = deep_checks(mpich_profile(mpich_version()), mpich_base, machine="aarch64")
    assert "mpi.libraries[0] profile.wrong-architecture" in codes(found, "error")


# --- 1. the closure is complete ------------------------------------------------------------


def _closure_files(root: Path) -> List[Path]:
    """Every ELF file of the tree's library directories (what the closure can reach)."""
    out = []
    for directory, _dirs, names in os.walk(root / LIBDIR.lstrip("/")):
        for name in names:
            path = Path(directory) / name
            if not path.is_symlink() and ".so" in name:
                out.append(path)
    return out


def _pick_needed(root: Path, direct: bool) -> str:
    """A dependency to remove: one libmpich needs itself, or one only others need."""
    mine = [n for n in needed_of(Path(os.path.realpath(root / MPICH_LIB.lstrip("/"))))
            if not is_glibc_family(n)]
    if direct:
        return mine[0]
    everything = {n for f in _closure_files(root) for n in needed_of(f)
                  if not is_glibc_family(n) and (root / LIBDIR.lstrip("/") / n).exists()}
    others = sorted(everything - set(mine) - {posixpath.basename(p) for p in MPICH_LIBS}
                    - {"libmpich.so.12"})
    assert others, "every dependency is a direct one"
    return others[0]


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "indirect"])
def test_removed_dependency_names_who_needs_it(mpich_base: Path, tmp_path: Path,
                                               direct: bool) -> None:
    root = clone(mpich_base, tmp_path)
    name = _pick_needed(root, direct)
    # Who needs it, by pyelftools over the files still in the tree.
    remove_library(root, name)
    needers = {os.path.realpath(f) for f in _closure_files(root) if name in needed_of(f)}
    found = deep_checks(mpich_profile(mpich_version()), root)
    missing = [f for f in found if f.code == "profile.needed-missing"]
    assert missing and all(f.severity == "error" for f in missing)
    owners = set()
    for finding in missing:
        match = re.match(r"^(/\S+) needs (\S+), ", finding.message)
        assert match, finding.message
        assert match.group(2) == name
        owners.add(os.path.realpath(root / match.group(1).lstrip("/")))
        assert name in finding.hint and "mpi.library_dirs" in finding.hint
        assert finding.source in ("mpi.libraries[0]", "mpi.libraries[1]", "mpi.libraries[2]",
                                  "libraries[0].path")
    # The closure reaches only what the profile loads: every reported owner needs it, and
    # libmpich is among them exactly when it needs it itself.
    assert owners and owners <= needers
    mpich_real = os.path.realpath(root / MPICH_LIB.lstrip("/"))
    assert (mpich_real in owners) == direct
    if direct:
        first = next(f for f in missing if f.message.startswith(MPICH_LIB))
        assert first.source == "mpi.libraries[0]"
    else:
        assert all("loaded through" in f.message for f in missing
                   if not f.source.startswith("libraries"))
    assert errors(found) == missing  # nothing else goes wrong


# --- 3. what the MPI library is -------------------------------------------------------------


def test_mpich_claimed_as_openmpi_is_an_error(mpich_base: Path) -> None:
    profile = mpich_profile(mpich_version(), family="openmpi")
    found = deep_checks(profile, mpich_base)
    wrong = [f for f in found if f.code == "profile.mpi-family-mismatch"]
    assert len(wrong) == 1 and wrong[0].severity == "error" and wrong[0].source == "mpi.family"
    assert MPICH_LIB in wrong[0].message and "MPICH ABI" in wrong[0].message
    assert 'family = "mpich"' in wrong[0].hint


@pytest.mark.parametrize("change", ["major", "patch"])
def test_version_mismatch_is_an_error(mpich_base: Path, change: str) -> None:
    real = mpich_version()
    parts = real.split(".")
    if change == "major":
        parts[0] = str(int(parts[0]) + 1)
    else:
        parts[-1] = str(int(re.match(r"\d+", parts[-1]).group(0)) + 1)  # type: ignore[union-attr]
    claimed = ".".join(parts)
    found = deep_checks(mpich_profile(claimed), mpich_base)
    assert codes(found) == ["mpi.version profile.mpi-version-mismatch"]
    assert found[0].severity == "error"
    assert claimed in found[0].message and real in found[0].message
    assert f'version = "{real}"' in found[0].hint


def test_version_series_agrees_and_absent_version_is_info(mpich_base: Path) -> None:
    real = mpich_version()
    series = ".".join(real.split(".")[:2])
    assert deep_checks(mpich_profile(series), mpich_base) == []
    found = deep_checks(mpich_profile(""), mpich_base)
    assert codes(found) == ["mpi.version profile.mpi-version-unset"]
    assert found[0].severity == "info" and f'version = "{real}"' in found[0].hint


def test_unreadable_version_is_a_warning(mpich_base: Path, tmp_path: Path) -> None:
    """A vendor build without MPICH's banner strings: the real library with them renamed."""
    root = clone(mpich_base, tmp_path)
    real = Path(os.path.realpath(root / MPICH_LIB.lstrip("/")))
    data = real.read_bytes()
    assert b"MPICH Version:" in data
    real.unlink()  # a hard link to the base tree: write a new file instead
    real.write_bytes(data.replace(b"MPICH Version:", b"XXXXX Version:"))
    found = deep_checks(mpich_profile(mpich_version()), root)
    assert codes(found) == ["mpi.version profile.mpi-version-unknown"]
    assert found[0].severity == "warning" and mpich_version() in found[0].message


def test_sonames_must_be_provided(mpich_base: Path) -> None:
    profile = mpich_profile(mpich_version(), sonames=("libmpi.so.12",))
    found = deep_checks(profile, mpich_base)
    assert codes(found) == ["mpi.sonames[0] profile.soname-not-provided"]
    assert found[0].severity == "error" and "libmpich.so.12" in found[0].message
    # The real file named by its full libtool name still provides its soname.
    real = os.path.realpath(MPICH_LIB)
    named = mpich_profile(mpich_version(), libraries=(real, *MPICH_LIBS[1:]))
    assert deep_checks(named, mpich_base) == []


@pytest.fixture(scope="session")
def openmpi_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian Open MPI's libmpi.so.40 and everything it needs."""
    need(OPENMPI_LIB)
    root = tmp_path_factory.mktemp("deep-openmpi") / "root"
    copy_host_file(root, OPENMPI_LIB)
    write_ld_config(root, [LIBDIR], cache=False)
    fill_missing(root, [OPENMPI_LIB])
    write_ld_config(root, [LIBDIR])
    return root


def test_openmpi_claimed_as_mpich_is_an_error(openmpi_base: Path) -> None:
    version = openmpi_version()
    right = Profile(schema=1, name="ompi", mpi=Mpi(
        family="openmpi", implementation="Open MPI", version=version,
        libraries=(OPENMPI_LIB,), sonames=("libmpi.so.40",)))
    assert errors(deep_checks(right, openmpi_base)) == []
    wrong = with_(right, mpi=Mpi(family="mpich", implementation="MPICH", version=version,
                                 libraries=(OPENMPI_LIB,), sonames=("libmpi.so.40",)))
    found = deep_checks(wrong, openmpi_base)
    assert codes(found, "error") == ["mpi.family profile.mpi-family-mismatch"]
    assert "Open MPI" in found[0].message and 'family = "openmpi"' in found[0].hint
    assert "mpi.implementation profile.mpi-implementation-mismatch" in codes(found, "warning")


# --- 2. run-time providers -------------------------------------------------------------------


def _ucx_module_count() -> int:
    """Distinct loadable module files in the real ucx/ directory (symlinks collapsed)."""
    return len({os.path.realpath(f"{UCX_DIR}/{n}") for n in os.listdir(UCX_DIR)
                if re.search(r"\.so(\.\d+)*$", n)})


def test_ucx_modules_must_be_visible(mpich_base: Path) -> None:
    profile = with_(mpich_profile(mpich_version()), libraries=())
    found = deep_checks(profile, mpich_base)
    assert codes(found) == ["mpi.libraries[0] profile.ucx-modules-hidden"]
    assert found[0].severity == "warning"
    assert f"{UCX_DIR} holds {_ucx_module_count()} UCX modules" in found[0].message
    assert f'path = "{UCX_DIR}/*.so*"' in found[0].hint
    bound = with_(profile, binds=(BindSpec(source=UCX_DIR, read_only=True),))
    assert deep_checks(bound, mpich_base) == []


def test_verbs_providers_named_by_bound_driver_files(mpich_base: Path) -> None:
    base = mpich_profile(mpich_version())
    assert deep_checks(base, mpich_base) == []  # /etc/libibverbs.d not bound: not looked at
    profile = with_(base, binds=(BindSpec(source=VERBS_CONF, read_only=True),))
    found = deep_checks(profile, mpich_base)
    assert codes(found) == ["binds[0].source profile.verbs-provider-missing",
                            "binds[0].source profile.verbs-providers-hidden"]
    assert all(f.severity == "warning" for f in found)
    assert found[0].message.startswith(f"{VERBS_CONF}/mlx4.driver names the verbs provider mlx4")
    assert VERBS_DIR in found[0].message
    assert found[1].message.startswith(f"{VERBS_DIR} holds the verbs providers mlx5 ")
    listed = with_(profile, libraries=(*profile.libraries,
                                       Library(path=f"{VERBS_DIR}/lib*-rdmav*.so")))
    assert codes(deep_checks(listed, mpich_base)) == [
        "binds[0].source profile.verbs-provider-missing"]
    # Listed under another path to the same directory (/lib -> usr/lib): still visible.
    merged = with_(profile, libraries=(*profile.libraries, Library(
        path="/lib/x86_64-linux-gnu/libibverbs/libmlx5-rdmav34.so")))
    assert codes(deep_checks(merged, mpich_base)) == [
        "binds[0].source profile.verbs-provider-missing"]
    # Binding a single driver file checks that file only.
    single = with_(base, binds=(BindSpec(source=f"{VERBS_CONF}/mlx5.driver"),))
    assert codes(deep_checks(single, mpich_base)) == [
        "binds[0].source profile.verbs-providers-hidden"]


@pytest.fixture(scope="module")
def wheel_site(mpi_wheel: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
               ) -> HostSite:
    """PyPI MPICH 5.0.2 at /opt/mpich/lib: libmpi.so.12 and libmpi_abi.so.1, libfabric with
    its providers in ``mpich/libfabric/``, UCX with its modules in ``mpich/ucx/``."""
    return wheel_mpich_host(tmp_path_factory.mktemp("deep-wheel") / "root",
                            mpi_wheel("mpich"), providers=False)


def test_libfabric_providers_beside_libfabric(wheel_site: HostSite) -> None:
    found = deep_checks(wheel_site.profile, wheel_site.root)
    assert errors(found) == []
    fabric = [f for f in found if f.code == "profile.libfabric-providers-hidden"]
    assert len(fabric) == 1 and fabric[0].severity == "warning"
    assert fabric[0].source.startswith("mpi.libraries[")
    directory = re.match(r"^(/\S+) holds (\d+) libfabric providers", fabric[0].message)
    assert directory, fabric[0].message
    on_disk = wheel_site.root / directory.group(1).lstrip("/")
    assert on_disk.is_dir() and directory.group(1).endswith("/libfabric")
    assert int(directory.group(2)) == len({os.path.realpath(p) for p in on_disk.glob("*.so*")})
    assert "profile.ucx-modules-hidden" in [f.code for f in found]
    shown = with_(wheel_site.profile, libraries=(
        Library(path=f"{directory.group(1)}/*.so"),
        Library(path=f"{posixpath.dirname(directory.group(1))}/ucx/*.so.0")))
    assert not [f for f in deep_checks(shown, wheel_site.root) if f.code.endswith("-hidden")]


def test_system_ucx_modules_for_the_wheel_are_unrelated(wheel_site: HostSite) -> None:
    """The wheel's libucs (lib/mpich/) opens lib/mpich/ucx/; the system's ucx/ modules,
    listed, belong to a libucs the MPI never loads."""
    need(f"{UCX_DIR}/libuct_cma.so.0")
    copy_into(wheel_site.root, [f"{UCX_DIR}/{n}" for n in os.listdir(UCX_DIR)
                                if n.startswith("libuct_") and ".so." in n])
    fill_missing(wheel_site.root, [f"{UCX_DIR}/libuct_cma.so.0"])
    profile = with_(wheel_site.profile, libraries=(
        Library(path="/opt/mpich/lib/mpich/libfabric/*-fi.so"),
        Library(path="/opt/mpich/lib/mpich/ucx/*.so*"),
        Library(path=f"{UCX_DIR}/libuct_*.so.0")))
    found = deep_checks(profile, wheel_site.root)
    assert codes(found, "warning") == ["libraries[2].path profile.provider-unrelated"]
    assert found[-1].message.startswith(f"{UCX_DIR} holds UCX modules of the libucs.so* in "
                                        f"{LIBDIR}, which the host MPI never loads (it loads "
                                        "libucs.so.0 from /opt/mpich/lib/mpich)")
    assert codes(deep_checks(with_(profile, libraries=profile.libraries[:2]), wheel_site.root),
                 "warning") == []


def test_mpi_abi_claim_needs_the_abi_library(wheel_site: HostSite) -> None:
    mpi = wheel_site.profile.mpi
    assert mpi is not None and len(mpi.libraries) == 2  # libmpi.so.12, libmpi_abi.so.1
    claimed = with_(wheel_site.profile, mpi=Mpi(family="mpi-abi", libraries=mpi.libraries))
    assert errors(deep_checks(claimed, wheel_site.root)) == []
    c_only = with_(claimed, mpi=Mpi(family="mpi-abi", libraries=mpi.libraries[:1]))
    found = deep_checks(c_only, wheel_site.root)
    assert codes(found, "error") == ["mpi.family profile.mpi-family-mismatch"]
    assert "libmpi_abi.so" in errors(found)[0].message


def test_bad_paths_never_raise(mpich_base: Path) -> None:
    """Paths validate_profile rejects (NUL, relative, empty) are skipped, not a crash."""
    profile = Profile(
        schema=1, name="bad",
        mpi=Mpi(family="mpich", libraries=(f"{LIBDIR}/x\x00y.so", "relative.so"),
                library_dirs=("/a\x00b", "relative", ""), sonames=("libmpi.so.12", "a/b", "")),
        libraries=(Library(path=f"{LIBDIR}/lib\x00*.so"), Library(path="rel/*.so"),
                   Library(path=LIBDIR)),
        binds=(BindSpec(source=f"{VERBS_CONF}\x00"), BindSpec(source="relative"),
               BindSpec(source="")),
        container=Container(preload=("\x00", "")))
    assert isinstance(deep_checks(profile, mpich_base), list)


def test_driver_names_of_the_real_driver_files() -> None:
    files = sorted(Path(VERBS_CONF).glob("*.driver")) if os.path.isdir(VERBS_CONF) else []
    if not files:
        pytest.skip("rdma-core's driver files are not installed")
    for path in files:
        assert driver_names(path.read_text()) == [path.stem]
    assert driver_names("# comment\n\ndriver /opt/x/libfoo  # absolute\n") == ["/opt/x/libfoo"]


@pytest.mark.parametrize("claimed, found, agree", [
    ("4.0.2", "4.0.2", True), ("4.0", "4.0.2", True), ("4.1.4", "4.1", True),
    ("2019 Update 4", "2019.4", True), ("4.0.3", "4.0.2", False), ("3.4.1", "4.0.2", False),
    ("", "4.0.2", False),
])
def test_versions_agree(claimed: str, found: str, agree: bool) -> None:
    assert versions_agree(claimed, found) is agree


# --- the real host through the installed command ------------------------------------------


@pytest.fixture(scope="module")
def hpcrun_bin() -> str:
    path = shutil.which("hpcrun")
    if path is None:
        pytest.skip("the hpcrun console script is not installed (pip install -e .)")
    return path


def _env() -> Dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HPCRUN_")}
    environ.update(COLUMNS="200", NO_COLOR="1")
    return environ


@pytest.mark.parametrize("site, library", [("debian-mpich", MPICH_LIB),
                                           ("debian-openmpi", OPENMPI_LIB)])
def test_shipped_debian_profiles_pass_deep_here(hpcrun_bin: str, site: str,
                                                library: str) -> None:
    need(library)
    done = subprocess.run([hpcrun_bin, "site", "validate", "--deep", site], capture_output=True,
                          text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert re.search(r": 0 error\(s\), \d+ warning\(s\)$", lines[-1])
    assert all(line.split()[0] in ("WARNING", "INFO") for line in lines[:-1])


def _write_profile(path: Path, family: str) -> Path:
    libs = ", ".join(f'"{p}"' for p in MPICH_LIBS)
    path.write_text(f'schema = 1\nname = "wrong"\n\n[mpi]\nfamily = "{family}"\n'
                    f'libraries = [{libs}]\nsonames = ["libmpich.so.12"]\n')
    return path


def test_cli_plain_lines_and_exit_code(hpcrun_bin: str, tmp_path: Path) -> None:
    need(*MPICH_LIBS)
    bad = _write_profile(tmp_path / "wrong.toml", "openmpi")
    done = subprocess.run([hpcrun_bin, "site", "validate", "--deep", str(bad)],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 78, done.stdout
    lines = done.stdout.splitlines()
    assert any(line.startswith(f"ERROR mpi.family: the profile says Open MPI, but {MPICH_LIB} ")
               for line in lines)
    assert lines[-1].startswith(f"{bad}: 1 error(s)")
    assert "Traceback" not in done.stderr


def _run_in_pty(argv: Sequence[str]) -> Tuple[int, str]:
    """Run a command with its standard output on a pseudo-terminal (rich sees a terminal)."""
    master, slave = pty.openpty()
    env = _env()
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(list(argv), stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks: List[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(timeout=300)
    text = b"".join(chunks).decode("utf-8", "replace")
    return code, re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_cli_table_at_a_terminal(hpcrun_bin: str, tmp_path: Path) -> None:
    need(*MPICH_LIBS)
    bad = _write_profile(tmp_path / "wrong.toml", "openmpi")
    code, text = _run_in_pty([hpcrun_bin, "site", "validate", "--deep", str(bad)])
    assert code == 78, text
    header = next(line for line in text.splitlines() if "severity" in line)
    assert re.search(r"severity\s*\S\s*key\s*\S\s*message\s*\S\s*hint", header), header
    assert "ERROR" in text and "mpi.family" in text
    assert not any(line.startswith("ERROR mpi.family:") for line in text.splitlines())
    code, plain = _run_in_pty([hpcrun_bin, "site", "validate", "--deep", "--plain", str(bad)])
    assert code == 78
    assert any(line.startswith("ERROR mpi.family: ") for line in plain.splitlines())


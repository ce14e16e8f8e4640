"""The MPI-5 standard ABI across implementations (issue 12, item 3), with real libraries.

Applications are compiled here against the two real ``mpi_abi.h`` headers (PyPI ``mpich``
5.0.2 and Intel's ``impi-devel`` 2021.19) and linked to ``libmpi_abi.so.1``; the host MPIs
are the real wheels' libraries, profiled by ``hpcrun site detect``; verdicts come from
``hpcrun check`` on real sandbox images.  The real runs across implementations are in
``tests/e2e/test_mpi_abi_runs.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from helpers import images
from hpcrun.cli.main import EXIT_INCOMPATIBLE, EXIT_OK, EXIT_WARNINGS
from hpcrun.profiles.detect import detect_site, render_detection
from hpcrun.resolve import abi, families

HPCRUN = shutil.which("hpcrun") or ""
REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello.c"
WHEEL_LIB = {"mpich": "mpich-5.0.2.data/data/lib", "impi_rt": "impi_rt-2021.19.0.data/data/lib"}

# A program that passes three of the constants on which the headers disagree.
CONSTANTS_C = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int *size, flag;
    MPI_Init(&argc, &argv);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_UNIVERSE_SIZE, &size, &flag);
    printf("universe %d\n", flag ? *size : -1);
    MPI_Finalize();
    return 0;
}
"""
# Calls a function (and its profiling entry point) that Intel's libmpi_abi defines and
# MPICH 5.0.2's does not.
C2F_C = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    printf("%d %d\n", (int)MPI_File_c2f(MPI_FILE_NULL), (int)PMPI_File_c2f(MPI_FILE_NULL));
    MPI_Finalize();
    return 0;
}
"""


def _headers(mpi_wheel: Callable[[str], Path], name: str) -> Path:
    if name == "mpich":
        return mpi_wheel("mpich") / "mpich-5.0.2.data/data/include"
    return mpi_wheel("impi_devel") / "impi_devel-2021.19.0.data/data/include"


def _compile(source: Path, out: Path, include: Path, libdir: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    subprocess.run(["gcc", "-O1", "-DMPI_ABI", f"-I{include}", str(source), "-o", str(out),
                    f"-L{libdir}", "-lmpi_abi"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def abi_apps(mpi_wheel: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Dict[str, Path]:
    """hello built with each header; the constants and c2f programs built with Intel's."""
    work = tmp_path_factory.mktemp("abi-apps")
    (work / "constants.c").write_text(CONSTANTS_C)
    (work / "c2f.c").write_text(C2F_C)
    mpich_lib = mpi_wheel("mpich") / WHEEL_LIB["mpich"]
    intel_lib = mpi_wheel("impi_rt") / WHEEL_LIB["impi_rt"]
    intel_inc = _headers(mpi_wheel, "impi")
    return {
        "hello_mpich": _compile(HELLO, work / "hello_mpich", _headers(mpi_wheel, "mpich"),
                                mpich_lib),
        "hello_intel": _compile(HELLO, work / "hello_intel", intel_inc, intel_lib),
        "constants_intel": _compile(work / "constants.c", work / "constants_intel", intel_inc,
                                    intel_lib),
        "c2f_intel": _compile(work / "c2f.c", work / "c2f_intel", intel_inc, intel_lib),
    }


def build_abi_root(root: Path, apps: Dict[str, Path], own_abi_library: str = "") -> Path:
    """A small image of this host's libc6/libgcc-s1/libstdc++6, busybox and the apps in
    /usr/local/bin; ``own_abi_library``: a libmpi_abi.so.1 the image carries itself."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox) or shutil.which("ldconfig") is None:
        pytest.skip("busybox and ldconfig are needed to build the test image")
    root.mkdir(parents=True)
    images._skeleton(root)
    shutil.copy2(busybox, root / "usr/bin/busybox")
    for applet in images.BUSYBOX_APPLETS:
        os.symlink("busybox", root / "usr/bin" / applet)
    for lib in images.base_libraries():
        images.copy_with_links(root, lib)
    for name, path in apps.items():
        shutil.copy2(path, root / "usr/local/bin" / name)
    if own_abi_library:
        shutil.copy2(own_abi_library, root / "usr/lib/x86_64-linux-gnu/libmpi_abi.so.1")
    images._environment_scripts(root, "mpiabi")
    subprocess.run(["ldconfig", "-r", str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def abi_image(abi_apps: Dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_abi_root(tmp_path_factory.mktemp("abi-image") / "root", abi_apps)


@pytest.fixture(scope="module")
def sites(mpi_wheel: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
          ) -> Dict[str, Path]:
    """Detected profiles of the MPICH 5 and Intel MPI 2021 wheels (both ship libmpi_abi)."""
    out = {}
    for name in WHEEL_LIB:
        detection = detect_site(Path("/"), {"PATH": "/usr/bin:/bin"},
                                mpi=str(mpi_wheel(name) / WHEEL_LIB[name]), name=f"w-{name}")
        libraries = detection.profile.mpi.libraries  # type: ignore[union-attr]
        assert any(p.endswith("/libmpi_abi.so.1") for p in libraries), libraries
        out[name] = tmp_path_factory.mktemp("abi-sites") / f"w-{name}.toml"
        out[name].write_text(render_detection(detection))
    return out


def check(site: Path, image: Path, app: str) -> Dict:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    done = subprocess.run([HPCRUN, "check", "--site", str(site), str(image), "--app", app,
                           "--json"], capture_output=True, text=True, timeout=120, check=False)
    report = json.loads(done.stdout)
    expected = {"compatible": EXIT_OK, "warnings": EXIT_WARNINGS,
                "incompatible": EXIT_INCOMPATIBLE}[report["verdict"]]
    assert done.returncode == expected, done.stderr
    return report


def by_code(report: Dict, code: str) -> List[Dict]:
    return [d for d in report["diagnostics"] if d["code"] == code]


@pytest.mark.parametrize("host, app", [("mpich", "hello_intel"), ("impi_rt", "hello_mpich"),
                                       ("mpich", "hello_mpich"), ("impi_rt", "hello_intel")])
def test_any_host_with_libmpi_abi_serves_an_abi_app(sites, abi_image, host: str,
                                                    app: str) -> None:
    report = check(sites[host], abi_image, f"/usr/local/bin/{app}")
    assert report["verdict"] == "compatible", report["diagnostics"]
    (header,) = by_code(report, "mpi-abi-header")
    # Honest: the header is not knowable from the ELF; this app passes none of the constants.
    assert header["severity"] == "info" and "not knowable from its ELF" in header["message"]
    assert "calls none of the functions" in header["message"]
    binds = {b["destination"]: b["source"] for b in report["binds"]}
    lib = binds["/.hpcrun/lib/libmpi_abi.so.1"]
    assert lib.endswith(f"{WHEEL_LIB[host]}/libmpi_abi.so.1")


def test_constants_that_differ_are_named_when_the_app_passes_them(sites, abi_image) -> None:
    report = check(sites["mpich"], abi_image, "/usr/local/bin/constants_intel")
    assert report["verdict"] == "warnings"
    (header,) = by_code(report, "mpi-abi-header")
    assert header["severity"] == "warning"
    message = header["message"]
    for constant in ("MPI_ERRORS_ABORT", "MPI_ERRORS_RETURN", "MPI_SEEK_SET", "MPI_SEEK_CUR",
                     "MPI_SEEK_END", "MPI_APPNUM", "MPI_LASTUSEDCODE", "MPI_UNIVERSE_SIZE"):
        assert constant in message
    assert "only safe for programs that avoid" in message
    assert "not knowable from its ELF" in message
    assert "the app calls MPI_Comm_get_attr, MPI_Comm_set_errhandler" in message


def test_image_with_the_other_implementations_library_says_so(
        sites, abi_apps, mpi_wheel, tmp_path: Path) -> None:
    """The image carries Intel's libmpi_abi.so.1: the app was likely built with Intel's
    header, and the MPICH host's library reads the constants differently."""
    intel = mpi_wheel("impi_rt") / WHEEL_LIB["impi_rt"] / "libmpi_abi.so.1"
    image = build_abi_root(tmp_path / "root", abi_apps, own_abi_library=str(intel))
    report = check(sites["mpich"], image, "/usr/local/bin/constants_intel")
    (header,) = by_code(report, "mpi-abi-header")
    assert header["severity"] == "warning"
    assert "the image's own libmpi_abi is Intel MPI's" in header["message"]
    same = check(sites["impi_rt"], image, "/usr/local/bin/constants_intel")
    assert by_code(same, "mpi-abi-header") == []  # same implementation: nothing to say


def test_missing_entry_points_and_profiling_entry_points_are_named(sites, abi_image) -> None:
    report = check(sites["mpich"], abi_image, "/usr/local/bin/c2f_intel")
    assert report["verdict"] == "incompatible"
    (missing,) = by_code(report, "mpi-undefined-symbols")
    assert "MPI_File_c2f" in missing["message"]
    assert "profiling interface entry points PMPI_File_c2f" in missing["message"]
    # Intel's own library defines both.
    assert check(sites["impi_rt"], abi_image, "/usr/local/bin/c2f_intel")["verdict"] == \
        "compatible"


def test_implementation_abi_apps_never_get_the_standard_abi_library(
        sites, mpi_wheel, tmp_path: Path) -> None:
    """An app linked to libmpi.so.12 is served by libmpi.so.12, never by libmpi_abi.so.1;
    a host offering only the standard ABI refuses it."""
    lib = mpi_wheel("mpich") / WHEEL_LIB["mpich"]
    app = tmp_path / "hello12"
    subprocess.run(["gcc", "-O1", f"-I{lib.parent / 'include'}", str(HELLO), "-o", str(app),
                    f"-L{lib}", "-l:libmpi.so.12"], check=True, capture_output=True)
    image = build_abi_root(tmp_path / "root", {"hello12": app})
    report = check(sites["mpich"], image, "/usr/local/bin/hello12")
    assert report["verdict"] == "compatible"
    plan = subprocess.run([HPCRUN, "--site", str(sites["mpich"]), "--runtime", "apptainer",
                           "--json", "srun", "-n", "2", str(image), "/usr/local/bin/hello12"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert plan.returncode == 0, plan.stderr
    binds = json.loads(plan.stdout)["binds"]
    served = {b["destination"]: b["source"] for b in binds}
    assert served["/.hpcrun/lib/libmpi.so.12"].endswith("/libmpi.so.12")
    assert not [d for d, s in served.items() if s.endswith("libmpi_abi.so.1")
                and not d.endswith("/libmpi_abi.so.1")]
    abi_only = tmp_path / "abi-only.toml"
    abi_only.write_text(f'schema = 1\nname = "abi-only"\n[mpi]\nfamily = "mpi-abi"\n'
                        f'libraries = ["{lib}/libmpi_abi.so.1"]\nlibrary_dirs = ["{lib}"]\n')
    refused = check(abi_only, image, "/usr/local/bin/hello12")
    assert refused["verdict"] == "incompatible"
    assert by_code(refused, "mpi-family-mismatch") or by_code(refused, "mpi-soname-mismatch")


def test_abi_rules_data_matches_its_schema_and_the_name_tables() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(abi.DATA).parent / "mpi-abi.schema.json").read_text())
    jsonschema.validate(abi.rules(), schema)
    from hpcrun.elf.mpi import mpi_name

    for soname, role in abi.sonames().items():
        assert families.soname_family(soname) == families.MPI_ABI
        assert families.soname_role(soname) == ("abi" if role == "abi" else "fortran")
        assert mpi_name(soname) == (families.MPI_ABI, role)
    assert len(abi.differing_constants()) == 8
    # Each constant's values really differ between the two sides.
    for constant in abi.rules()["header_differences"]["constants"]:
        assert len(set(constant["values"].values())) == 2, constant


WHEEL_BIN = {"mpich": "mpich-5.0.2.data/data/bin", "impi_rt": "impi_rt-2021.19.0.data/data/bin"}
BANNER = {"mpich": "MPICH Version:", "impi_rt": "Intel(R) MPI Library 2021.19"}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("host, app", [("mpich", "hello_intel"), ("impi_rt", "hello_mpich")])
def test_abi_app_runs_on_the_other_implementation_for_real(sites, abi_image, mpi_wheel,
                                                           host: str, app: str) -> None:
    """Real Apptainer, the host implementation's own mpiexec.hydra, 2 ranks: the app built
    with one implementation's mpi_abi.h runs on the other's libmpi_abi.so.1 (Intel MPI with
    I_MPI_FABRICS=shm from its detected profile: the wheel has no libfabric)."""
    if not shutil.which("apptainer") or os.geteuid() != 0:
        pytest.skip("needs real Apptainer, as root")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPTAINER", "I_MPI_", "FI_", "UCX_", "PMI", "HPCRUN_SITE"))}
    env.pop("LD_LIBRARY_PATH", None)
    env["PATH"] = f"{mpi_wheel(host) / WHEEL_BIN[host]}:{env.get('PATH', '/usr/bin:/bin')}"
    done = subprocess.run([HPCRUN, "--site", str(sites[host]), "--runtime", "apptainer",
                           "mpiexec.hydra", "-n", "2", str(abi_image), f"/usr/local/bin/{app}"],
                          env=env, capture_output=True, text=True, timeout=240, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    for rank in (0, 1):
        assert f"Hello World! I am process {rank} of 2" in output
        assert f"rank {rank} libmpi: /.hpcrun/lib/libmpi_abi.so.1" in output
        library = [line for line in output.splitlines() if line.startswith(f"rank {rank} library:")]
        assert library and BANNER[host] in library[0], output


@pytest.mark.e2e
@pytest.mark.slow
def test_refused_abi_launch_starts_no_rank(sites, abi_image, mpi_wheel) -> None:
    """The app calls MPI_File_c2f/PMPI_File_c2f, which MPICH 5.0.2's libmpi_abi lacks: the
    launch is refused before the launcher runs (exit 68, one error line with a hint), and no
    rank prints anything."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APPTAINER", "I_MPI_", "FI_", "UCX_", "PMI", "HPCRUN_SITE"))}
    env["PATH"] = f"{mpi_wheel('mpich') / WHEEL_BIN['mpich']}:{env.get('PATH', '/usr/bin')}"
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    done = subprocess.run([HPCRUN, "--site", str(sites["mpich"]), "--runtime", "apptainer",
                           "mpiexec.hydra", "-n", "2", str(abi_image), "/usr/local/bin/c2f_intel"],
                          env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == EXIT_INCOMPATIBLE, done.stdout + done.stderr
    assert done.stdout == ""  # no rank ran: c2f_intel prints a line per rank
    errors = [line for line in done.stderr.splitlines() if line.startswith("hpcrun: error")]
    assert errors and "PMPI_File_c2f" in done.stderr and "Traceback" not in done.stderr
    assert "hint" in done.stderr

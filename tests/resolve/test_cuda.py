"""CUDA release versus NVIDIA driver: the table and the minor-version-compatibility rule."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from helpers.gpu_trees import cuda_image
from hpcrun.host.gpu import host_ld_cache
from hpcrun.image.facts import ImageFacts
from hpcrun.plan.model import ERROR, WARNING
from hpcrun.resolve.cuda import (
    MINOR_COMPAT_MINIMUM,
    TOOLKIT_DRIVER,
    check_driver,
    cuda_major_minor,
    image_cuda_version,
    newest_supported,
    parse_version,
    toolkit_driver,
)


def test_table_is_monotonic() -> None:
    """A newer CUDA release never needs an older driver (catches typos in the table)."""
    releases = sorted(TOOLKIT_DRIVER)
    drivers = [parse_version(TOOLKIT_DRIVER[r]) for r in releases]
    assert drivers == sorted(drivers)
    for major, minimum in MINOR_COMPAT_MINIMUM.items():
        # The family minimum is at or below the driver of every minor of that major.
        for (maj, _minor), driver in TOOLKIT_DRIVER.items():
            if maj == major:
                assert parse_version(minimum) <= parse_version(driver) or (major, _minor) == (
                    11, 0)


@pytest.mark.parametrize("cuda, driver", [
    ("12.2", "535.54.03"),   # the 12.2 GA toolkit driver exactly
    ("12.2", "535.104.05"),
    ("12.0", "525.60.13"),
    ("11.8", "520.61.05"),
    ("12.9.79", "575.51.03"),
    ("10.2", "440.33"),
])
def test_new_enough_driver_is_silent(cuda: str, driver: str) -> None:
    assert check_driver(cuda, driver) == ()


def test_minor_version_compatibility_warns() -> None:
    (diag,) = check_driver("12.4", "525.60.13", source="libcudart in the image")
    assert diag.severity == WARNING and diag.code == "cuda-minor-version-compat"
    assert "12.4" in diag.message and "525.60.13" in diag.message
    assert "550.54.14" in diag.message  # the 12.4 toolkit driver
    assert "PTX" in diag.hint
    assert diag.source == "libcudart in the image"


def test_older_major_driver_is_an_error_naming_both_versions() -> None:
    (diag,) = check_driver("12.2", "470.82.01")
    assert diag.severity == ERROR and diag.code == "cuda-driver-too-old"
    assert "12.2" in diag.message and "470.82.01" in diag.message
    assert "525.60.13" in diag.message  # the 12.x minimum
    assert "11.x" in diag.hint  # what this driver can run instead


def test_cuda_11_needs_the_450_80_02_driver_for_minor_compat() -> None:
    (diag,) = check_driver("11.4", "450.51.06")
    assert diag.severity == ERROR and "450.80.02" in diag.message
    (diag,) = check_driver("11.4", "450.80.02")
    assert diag.severity == WARNING


def test_cuda_10_has_no_minor_version_compatibility() -> None:
    (diag,) = check_driver("10.2", "418.39")
    assert diag.severity == ERROR and "440.33" in diag.message
    assert "10.1" in diag.hint


def test_unknown_versions() -> None:
    assert check_driver("", "535.104.05") == ()
    assert check_driver("12.2", "") == ()
    (diag,) = check_driver("14.1", "600.10")
    assert diag.code == "cuda-unknown-release" and diag.severity == WARNING


def test_unpublished_minor_uses_the_previous_one() -> None:
    assert toolkit_driver(12, 7) == TOOLKIT_DRIVER[(12, 6)]
    assert toolkit_driver(14, 0) == ""


def test_versions() -> None:
    assert parse_version("535.104.05") == (535, 104, 5)
    assert parse_version("570.26") == (570, 26)
    assert cuda_major_minor("12.2.140") == (12, 2)
    assert cuda_major_minor("12") == (12, 0)
    assert cuda_major_minor("none") is None
    assert newest_supported("535.104.05") == "12.x"
    assert newest_supported("440.33") == "10.2"
    assert newest_supported("300.1") == ""


def test_image_version_sources() -> None:
    assert image_cuda_version(ImageFacts("x", "sif", cuda_runtime="12.2"))[0] == "12.2"
    assert image_cuda_version(ImageFacts("x", "sif", environment=(
        ("CUDA_VERSION", "11.8.0"), ("NVIDIA_REQUIRE_CUDA", "cuda>=12.0"))))[0] == "11.8.0"
    facts = ImageFacts("x", "sif", environment=(
        ("NVIDIA_REQUIRE_CUDA", "cuda>=12.4 brand=tesla,driver>=470,driver<471"),))
    assert image_cuda_version(facts) == ("12.4", "NVIDIA_REQUIRE_CUDA in the image environment")
    assert image_cuda_version(ImageFacts("x", "sif")) == ("", "")
    # A bare major from the libcudart soname is refined by the environment.
    facts = ImageFacts("x", "sif", cuda_runtime="12",
                       environment=(("NVIDIA_REQUIRE_CUDA", "cuda>=12.4"),))
    assert image_cuda_version(facts)[0] == "12.4"
    facts = ImageFacts("x", "sif", cuda_runtime="12",
                       environment=(("NVIDIA_REQUIRE_CUDA", "cuda>=11.8"),))
    assert image_cuda_version(facts) == ("12", "libcudart in the image")


def test_real_libcudart_in_an_image_cache(tmp_path: Path,
                                          mpi_wheel: Callable[[str], Path]) -> None:
    """The soname of the real libcudart (ldconfig-made image cache) gives the major."""
    cudart = mpi_wheel("nvidia_cuda_runtime_cu12") / "nvidia/cuda_runtime/lib/libcudart.so.12"
    root = cuda_image(tmp_path / "img", cudart, env={})
    facts = ImageFacts(str(root), "sandbox", ld_cache=tuple(host_ld_cache(root)))
    version, evidence = image_cuda_version(facts)
    assert version == "12"
    assert "libcudart.so.12" in evidence and "/usr/local/cuda/lib64" in evidence
    assert check_driver(version, "525.60.13") == ()
    assert check_driver(version, "470.82.01")[0].severity == ERROR

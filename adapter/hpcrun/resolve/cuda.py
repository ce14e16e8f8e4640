"""CUDA user space in the image versus the NVIDIA driver on the node.

Source of both tables: NVIDIA's *CUDA Toolkit Release Notes*, section "CUDA Driver",
Table 2 "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version
Compatibility" and Table 3 "CUDA Toolkit and Corresponding Driver Versions" (Linux x86_64
column), https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/ (edition of CUDA 13.2
Update 2), and the *CUDA Compatibility* guide, "Minor Version Compatibility"
(https://docs.nvidia.com/deploy/cuda-compatibility/).  The GA release of each minor
version is listed; updates of the same minor need at most a slightly newer driver, which
minor version compatibility covers.

The rules (pure functions, no I/O):
- driver >= the toolkit driver of the image's CUDA release: fine;
- CUDA 11 and later, driver >= the minimum of the image's CUDA *major* (minor version
  compatibility): runs, with a warning (PTX JIT compilation of newer PTX and features new
  in that minor release may fail);
- otherwise, or a CUDA major older than 11 below its toolkit driver: an error naming both
  versions and the minimum driver.
"""

from __future__ import annotations

import re

from hpcrun.image.facts import ImageFacts
from hpcrun.plan.model import ERROR, WARNING, Diagnostic

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

# (CUDA major, minor) -> toolkit driver version (Linux x86_64) of the GA release.
TOOLKIT_DRIVER: Dict[Tuple[int, int], str] = {
    (13, 2): "595.45.04",
    (13, 1): "590.44.01",
    (13, 0): "580.65.06",
    (12, 9): "575.51.03",
    (12, 8): "570.26",
    (12, 6): "560.28.03",
    (12, 5): "555.42.02",
    (12, 4): "550.54.14",
    (12, 3): "545.23.06",
    (12, 2): "535.54.03",
    (12, 1): "530.30.02",
    (12, 0): "525.60.13",
    (11, 8): "520.61.05",
    (11, 7): "515.43.04",
    (11, 6): "510.39.01",
    (11, 5): "495.29.05",
    (11, 4): "470.42.01",
    (11, 3): "465.19.01",
    (11, 2): "460.27.03",
    (11, 1): "455.23",
    (11, 0): "450.51.05",
    (10, 2): "440.33",
    (10, 1): "418.39",
    (10, 0): "410.48",
    (9, 2): "396.26",
    (9, 1): "390.46",
    (9, 0): "384.81",
    (8, 0): "367.48",
    (7, 5): "352.31",
    (7, 0): "346.46",
}

# CUDA major -> the minimum driver for minor version compatibility across that major.
# 11.x: 450.80.02 (the release notes' footnote: CUDA 11.0 shipped with an older driver);
# 12.x and 13.x: the driver of their .0 GA release (">= 525", ">= 580" in Table 2).
MINOR_COMPAT_MINIMUM: Dict[int, str] = {
    11: "450.80.02",
    12: "525.60.13",
    13: "580.65.06",
}

# Patterns are compiled at first use (re's cache): most launches never need them.
_VERSION = r"([0-9]+)\.([0-9]+)"
_REQUIRE = r"cuda\s*>=\s*([0-9]+\.[0-9]+)"
_CUDART = r"^libcudart\.so\.([0-9]+)(?:\.([0-9]+))?"


def parse_version(text: str) -> Tuple[int, ...]:
    """Numeric components of a dotted version ("535.104.05" -> (535, 104, 5)); () if none."""
    parts = []
    for piece in text.strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def cuda_major_minor(text: str) -> Optional[Tuple[int, int]]:
    """(major, minor) of a CUDA version string like "12.2", "12.2.140" or "12"."""
    match = re.search(_VERSION, text)
    if match:
        return int(match.group(1)), int(match.group(2))
    if text.strip().isdigit():
        return int(text.strip()), 0
    return None


def toolkit_driver(major: int, minor: int) -> str:
    """The driver NVIDIA lists for a CUDA release ("" when the release is not in the table).

    A minor release missing from the table (12.7 was never published) takes the next
    lower listed minor of the same major.
    """
    for candidate in range(minor, -1, -1):
        if (major, candidate) in TOOLKIT_DRIVER:
            return TOOLKIT_DRIVER[(major, candidate)]
    return ""


def newest_supported(driver_version: str) -> str:
    """The newest CUDA release a driver runs ("12.x", "10.2"), "" when it runs none listed.

    Under minor version compatibility a driver runs every minor of the newest major whose
    minimum it meets (CUDA 11 and later), hence "12.x".
    """
    driver = parse_version(driver_version)
    if not driver:
        return ""
    majors = [m for m, low in MINOR_COMPAT_MINIMUM.items() if driver >= parse_version(low)]
    if majors:
        return f"{max(majors)}.x"
    releases = [r for r, low in TOOLKIT_DRIVER.items() if driver >= parse_version(low)]
    if releases:
        best = max(releases)
        return f"{best[0]}.{best[1]}"
    return ""


def image_cuda_version(image: ImageFacts) -> Tuple[str, str]:
    """The image's CUDA version and where it was read: (version, evidence) or ("", "").

    Sources: the inspected libcudart version (``cuda_runtime``), ``CUDA_VERSION`` (set by
    NVIDIA's base images), ``NVIDIA_REQUIRE_CUDA`` ("cuda>=12.2 ..."), a ``libcudart.so.N``
    soname in the image's ld.so.cache.  The first that names major.minor wins; a bare
    major (a ``libcudart.so.12`` soname) is refined by a later source of the same major.
    """
    candidates = []
    if image.cuda_runtime:
        candidates.append((image.cuda_runtime, "libcudart in the image"))
    version = image.env("CUDA_VERSION")
    if cuda_major_minor(version):
        candidates.append((version, "CUDA_VERSION in the image environment"))
    match = re.search(_REQUIRE, image.env("NVIDIA_REQUIRE_CUDA"))
    if match:
        candidates.append((match.group(1), "NVIDIA_REQUIRE_CUDA in the image environment"))
    for soname, path in image.ld_cache:
        found = re.match(_CUDART, soname)
        if found:
            candidates.append((found.group(1), f"{soname} ({path}) in the image's ld.so.cache"))
            break
    if not candidates:
        return "", ""
    first = candidates[0]
    if "." not in first[0]:
        major = first[0].strip()
        for version, evidence in candidates[1:]:
            if "." in version and version.split(".")[0] == major:
                return version, evidence
    return first


def check_driver(cuda_version: str, driver_version: str, source: str = "") -> Tuple[
        Diagnostic, ...]:
    """Diagnostics for running CUDA ``cuda_version`` (from the image) on driver ``driver_version``.

    Nothing when either version is unknown to the caller ("" -> nothing to say) or when the
    driver is new enough; a warning under minor version compatibility or when the CUDA
    release is newer than this table; an error when the driver is too old.
    """
    release = cuda_major_minor(cuda_version)
    driver = parse_version(driver_version)
    if release is None or not driver:
        return ()
    major, minor = release
    needed = toolkit_driver(major, minor)
    if not needed:
        newest = max(TOOLKIT_DRIVER)
        if (major, minor) > newest:
            return (Diagnostic(
                WARNING, "cuda-unknown-release",
                f"the image's CUDA {cuda_version} is newer than hpcrun's driver table (up to "
                f"{newest[0]}.{newest[1]}); host driver {driver_version} not checked",
                hint=f"check NVIDIA's CUDA release notes for the driver CUDA {cuda_version} "
                     "needs",
                source=source),)
        return ()
    if driver >= parse_version(needed):
        return ()
    compat = MINOR_COMPAT_MINIMUM.get(major, "")
    if compat and driver >= parse_version(compat):
        return (Diagnostic(
            WARNING, "cuda-minor-version-compat",
            f"the image's CUDA {major}.{minor} wants driver >= {needed}; host driver "
            f"{driver_version} runs it through CUDA minor version compatibility (same major "
            f"{major}, minimum {compat})",
            hint=f"PTX JIT compilation and features new in CUDA {major}.{minor} may fail; "
                 f"upgrade the driver to >= {needed} for full support",
            source=source),)
    minimum = compat or needed
    supported = newest_supported(driver_version)
    older = f"an image built with CUDA {supported} or older" if supported else \
        "an image built with an older CUDA"
    return (Diagnostic(
        ERROR, "cuda-driver-too-old",
        f"the image's CUDA {cuda_version} needs NVIDIA driver >= {minimum} (toolkit driver "
        f"{needed}); the host driver is {driver_version}",
        hint=f"use {older}, add NVIDIA's cuda-compat package for CUDA {major}.{minor} to the "
             "image (forward compatibility, data-center GPUs), or ask the site for a driver "
             f">= {minimum}",
        source=source),)

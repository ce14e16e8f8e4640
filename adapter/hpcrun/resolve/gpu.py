"""The GPU decision: ``--nv`` / ``--rocm`` (or Charliecloud's equivalent binds), checks.

Pure: reads nothing but its arguments (plus a few ``stat`` calls on a sandbox image to say
which Charliecloud bind destinations are missing).

Vendor: ``request.gpu`` ("nvidia", "rocm", "none" for --no-gpu) overrides the profile's
``gpu.vendor``.  ``auto`` turns a GPU on when the node has one (``host.gpu``) and the
image carries the matching user space (CUDA: libcudart/libcublas in its ld.so.cache,
``cuda_runtime``, ``CUDA_VERSION`` / ``NVIDIA_*`` variables; ROCm: HIP/ROCm libraries,
``rocm``); when the image was not inspected, the node alone decides.

Apptainer and Singularity get the flag; the runtime binds the driver.  Charliecloud's
``ch-run`` has no such flag, so the driver libraries (from the host ld.so.cache) and tools
are bound one by one under ``<prefix>/gpu`` and put on ``LD_LIBRARY_PATH``.  Device nodes
need no bind there: ``ch-run`` already shares the host's ``/dev``.  ``ch-run`` cannot
create bind destinations: for a sandbox directory image a diagnostic lists the ones
it lacks.

GPU-aware MPI: ``gpu.libraries`` (GTL) are bound and preloaded, and the profile's ``env``
entries with ``when = "gpu"`` applied, only when a GPU is on -- by the plan builder alone
(``hpcrun.plan.build``), for every runtime, so they are applied exactly once.  The builder
counts a GPU as on when this stage returns a GPU flag (``--nv``/``--rocm``) or, for
Charliecloud, binds of kind ``"gpu"`` (see :func:`hpcrun.plan.build.gpu_active`).  A
Charliecloud GPU with no driver library found on the node binds nothing: a warning says so
and the GPU counts as off.
"""

from __future__ import annotations

import os
import posixpath

from hpcrun.errors import UsageError
from hpcrun.host.facts import HostFacts
from hpcrun.image.facts import ImageFacts
from hpcrun.plan.model import INFO, WARNING, Bind, Contribution, Diagnostic, Flag, Request
from hpcrun.profiles.model import Profile
from hpcrun.resolve.cuda import check_driver, image_cuda_version

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

CUDA_LIBRARY_STEMS = ("libcudart.so", "libcublas.so")
ROCM_LIBRARY_STEMS = ("libamdhip64.so", "libhipblas.so", "librocblas.so", "libhsa-runtime64.so")
FLAG = {"nvidia": "--nv", "rocm": "--rocm"}
HOST_VENDOR = {"nvidia": "nvidia", "rocm": "amd"}
_ALIASES = {"amd": "rocm", "cuda": "nvidia", "no": "none", "off": "none", "": "auto"}


def normalise_vendor(value: str, where: str) -> str:
    """``value`` as one of nvidia, rocm, none, auto; UsageError naming ``where`` otherwise."""
    vendor = _ALIASES.get(value.strip().lower(), value.strip().lower())
    if vendor not in ("nvidia", "rocm", "none", "auto"):
        raise UsageError(f"{where}: unknown GPU vendor {value!r}",
                         hint="use nvidia, rocm, none or auto")
    return vendor


def image_gpu_userspace(image: ImageFacts) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Evidence of CUDA and of ROCm user space in the image: (cuda evidence, rocm evidence)."""
    cuda: List[str] = []
    rocm: List[str] = []
    if image.cuda_runtime:
        cuda.append(f"libcudart {image.cuda_runtime}")
    if image.rocm:
        rocm.append(f"ROCm {image.rocm}")
    for soname, path in image.ld_cache:
        if soname.startswith(CUDA_LIBRARY_STEMS):
            cuda.append(f"{soname} ({path})")
        elif soname.startswith(ROCM_LIBRARY_STEMS):
            rocm.append(f"{soname} ({path})")
    for name, _value in image.environment:
        if name == "CUDA_VERSION" or name.startswith("NVIDIA_"):
            cuda.append(f"{name} in the image environment")
        elif name in ("ROCM_PATH", "HIP_PATH", "ROCM_VERSION"):
            rocm.append(f"{name} in the image environment")
    return tuple(dict.fromkeys(cuda)), tuple(dict.fromkeys(rocm))


def _requested(profile: Profile, request: Request) -> Tuple[str, str]:
    if request.gpu:
        vendor = normalise_vendor(request.gpu, "--gpu")
        return vendor, ("--no-gpu" if vendor == "none" else f"--gpu {vendor}")
    vendor = normalise_vendor(profile.gpu.vendor,
                              f"gpu.vendor in {profile.source or profile.name}")
    return vendor, f"profile gpu.vendor = {vendor}"


def _choose(vendor: str, why: str, host: HostFacts, image: Optional[ImageFacts]) -> Tuple[
        str, str, Tuple[Diagnostic, ...]]:
    """(chosen vendor or "none", reason, diagnostics)."""
    host_vendor = host.gpu.vendor
    node = "; ".join(host.gpu.evidence) or (
        "no GPU device nodes" if host_vendor == "none" else f"{host_vendor} GPU")
    cuda: Tuple[str, ...] = ()
    rocm: Tuple[str, ...] = ()
    if image is not None:
        cuda, rocm = image_gpu_userspace(image)
    if vendor in ("nvidia", "rocm"):
        diagnostics: Tuple[Diagnostic, ...] = ()
        if host_vendor != HOST_VENDOR[vendor]:
            diagnostics = (Diagnostic(
                WARNING, "gpu-forced-without-gpu",
                f"{why} asks for {vendor} GPUs but this node has none ({node})",
                hint="run on a GPU node, or drop the GPU option (--no-gpu)", source=why),)
        return vendor, why, diagnostics
    if vendor == "none":
        return "none", why, ()
    # auto
    if host_vendor == "nvidia" and (image is None or cuda):
        what = "image not inspected" if image is None else "image has " + ", ".join(cuda[:2])
        return "nvidia", f"{why}: NVIDIA GPU on the node ({node}) and {what}", ()
    if host_vendor == "amd" and (image is None or rocm):
        what = "image not inspected" if image is None else "image has " + ", ".join(rocm[:2])
        return "rocm", f"{why}: AMD GPU on the node ({node}) and {what}", ()
    found: List[Diagnostic] = []
    if cuda and host_vendor != "nvidia":
        found.append(Diagnostic(
            WARNING, "cuda-without-gpu",
            f"the image carries CUDA ({', '.join(cuda[:2])}) but this node has no NVIDIA GPU "
            f"({node}): the application will run without a GPU or fail",
            hint="submit to a GPU partition (e.g. srun --gpus=1), or --no-gpu to silence this",
            source="image"))
    if rocm and host_vendor != "amd":
        found.append(Diagnostic(
            WARNING, "rocm-without-gpu",
            f"the image carries ROCm ({', '.join(rocm[:2])}) but this node has no AMD GPU "
            f"({node})",
            hint="submit to an AMD GPU partition, or --no-gpu to silence this", source="image"))
    if host_vendor != "none" and not found:
        amd = host_vendor == "amd"
        found.append(Diagnostic(
            INFO, "gpu-not-needed",
            f"the node has {'AMD' if amd else 'NVIDIA'} GPUs but the image has no "
            f"{'ROCm' if amd else 'CUDA'} user space: no GPU flag",
            hint=f"--gpu {'rocm' if amd else 'nvidia'} forces it",
            source="image"))
    return "none", why, tuple(found)


def _missing_destinations(image: Optional[ImageFacts], destinations: List[str]) -> Optional[
        List[str]]:
    """For a sandbox directory image: the destinations it lacks; None when unknown."""
    if image is None or image.kind != "sandbox" or not os.path.isdir(image.source):
        return None
    return [d for d in destinations
            if not os.path.lexists(os.path.join(image.source, d.lstrip("/")))]


def decide(profile: Profile, request: Request, host: HostFacts, image: Optional[ImageFacts],
           runtime: str) -> Contribution:
    """Decide GPU support for one launch; see the module docstring for the rules.

    ``runtime`` is apptainer, singularity or charliecloud.  Returns the flag (with its
    reason), or for Charliecloud the driver library and tool binds (kind ``"gpu"``) with
    their ``library_path``; and diagnostics:
    CUDA-vs-driver errors and warnings (``hpcrun.resolve.cuda``), CUDA in the image without
    a GPU on the node, a GPU forced on a node without one.
    """
    vendor, why = _requested(profile, request)
    chosen, reason, diagnostics = _choose(vendor, why, host, image)
    if chosen == "none":
        return Contribution(diagnostics=diagnostics)

    found: List[Diagnostic] = list(diagnostics)
    if chosen == "nvidia" and image is not None and host.gpu.driver_version:
        version, evidence = image_cuda_version(image)
        found.extend(check_driver(version, host.gpu.driver_version, source=evidence))

    prefix = (profile.container.prefix or "/.hpcrun").rstrip("/") or "/.hpcrun"
    gpu_dir = prefix + "/gpu"
    binds: List[Bind] = []
    flags: Tuple[Flag, ...] = ()
    library_path: List[str] = []
    if runtime == "charliecloud":
        for soname, path in host.gpu.libraries:
            binds.append(Bind(path, posixpath.join(gpu_dir, soname), read_only=True,
                              reason=f"{chosen} driver library {soname} (ch-run has no "
                                     f"{FLAG[chosen]})", kind="gpu"))
        # Tools without the driver are useless, and any "gpu" bind turns the GPU on.
        for tool in host.gpu.tools if host.gpu.libraries else ():
            binds.append(Bind(tool, posixpath.join(gpu_dir, "bin", posixpath.basename(tool)),
                              read_only=True, reason=f"{chosen} driver tool", kind="gpu"))
        if host.gpu.libraries:
            library_path.append(gpu_dir)
        if host.gpu.devices:
            found.append(Diagnostic(
                INFO, "charliecloud-gpu-devices",
                f"GPU device nodes ({' '.join(host.gpu.devices[:4])}) reach the container "
                "through ch-run's bind of the host /dev", source="runtime charliecloud"))
        if not host.gpu.libraries:
            found.append(Diagnostic(
                WARNING, "charliecloud-gpu-no-driver",
                f"{reason}, but no {chosen} driver library was found in this node's "
                "ld.so.cache: ch-run gets no GPU binds (and gpu.libraries / when = \"gpu\" "
                "variables are not applied)",
                hint="run on a GPU node, or refresh the node's ld.so.cache (ldconfig)",
                source="runtime charliecloud"))
    else:
        flags = (Flag(FLAG[chosen], reason),)

    if runtime == "charliecloud" and binds:
        # Destinations under the private prefix are staged by the renderer (symlinks at a
        # free /mnt/N), so only the others (tools in /usr/bin ...) must exist in the image.
        # Known only for a sandbox directory; otherwise the renderer's general warning
        # about ch-run bind destinations covers it.
        destinations = [b.destination for b in binds
                        if not b.destination.startswith(prefix + "/")]
        missing = _missing_destinations(image, destinations)
        if missing:
            listed = missing
            more = f" and {len(listed) - 6} more" if len(listed) > 6 else ""
            fromhost = "--nvidia" if chosen == "nvidia" else "--path"
            found.append(Diagnostic(
                WARNING, "charliecloud-bind-destination",
                "ch-run cannot create bind destinations, and the image lacks "
                f"{', '.join(listed[:6])}{more}",
                hint=f"create them when building the image (mkdir -p {gpu_dir}; touch the "
                     f"files), or copy the driver into the image with ch-fromhost {fromhost}",
                source="runtime charliecloud"))

    return Contribution(binds=tuple(binds), flags=flags, diagnostics=tuple(found),
                        library_path=tuple(library_path))

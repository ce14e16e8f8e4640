"""The environment that makes a plain ``apptainer exec`` work the bind-model way for a site.

What Pawsey's modules do by hand (bind path, ``*ENV_LD_LIBRARY_PATH`` and the rest), derived
from the same plan builder and resolver as a launch.  Without an image the set is the one
``hpcrun --dry-run --no-check`` binds: all of the profile's MPI libraries (C, Fortran, C++)
and their host library closure.  A dry run with an image binds the part of that set its
application needs (no Fortran bindings for a C program).  Pure, but for the resolver's
reads of the host libraries.
"""

from __future__ import annotations

from hpcrun import records
from hpcrun.errors import UsageError
from hpcrun.host.facts import HostFacts, RuntimeInfo
from hpcrun.plan.build import build_plan
from hpcrun.plan.hostpaths import HostPaths
from hpcrun.plan.model import Diagnostic, Request
from hpcrun.profiles.model import Profile
from hpcrun.render.runtimes import render_invocation

# typing is for type checkers only: importing it at run time costs every call ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional, Tuple


def site_environment(profile: Profile, site: str, runtime: RuntimeInfo,
                     host_paths: Optional[HostPaths] = None
                     ) -> Tuple[List[Tuple[str, str]], Tuple[Diagnostic, ...]]:
    """Variables (name, value) for the site with no image or command yet, plus diagnostics.

    ``site`` is what ``HPCRUN_SITE`` is set to (the name, or an absolute profile path).  The
    values are independent of the caller's environment, so a module can undo them exactly.
    """
    if runtime.kind == "charliecloud":
        raise UsageError("Charliecloud takes binds and variables on its command line, not "
                         "from the environment: there is nothing to export",
                         "use `hpcrun --site SITE --runtime charliecloud ...` to launch")
    from hpcrun.resolve.resolver import resolve

    request = Request(launcher=(), image="", command=(), site=site)
    host = HostFacts(runtime=runtime)
    # The resolver without an image: every MPI library of the profile (C, Fortran, C++) and
    # the closure of host libraries they need, as `hpcrun --dry-run --no-check` binds.  Its
    # "not checked" warning is about a launch; here no image is expected.
    closure = resolve(profile, request, host, None)
    closure = records.replace(closure, diagnostics=tuple(
        d for d in closure.diagnostics if d.code != "not-checked"))
    plan = build_plan(profile, request, host, None, (closure,), host_paths, environ={})
    invocation, rendered = render_invocation(plan, {}, flavour=runtime.flavour,
                                             version=runtime.version)
    assignments = [("HPCRUN_SITE", site), *invocation.env_set]
    return assignments, plan.diagnostics + rendered

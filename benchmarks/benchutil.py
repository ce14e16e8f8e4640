"""Shared by the whole-process benchmarks: which ``hpcrun`` to run, and byte-compiling it.

* The ``hpcrun`` measured is the console script beside the running interpreter: a pyenv
  shim (a shell script that starts ``pyenv``) would add its own ~60 ms to every run.
* The package is byte-compiled first (``compileall``), as ``pip install`` does.  With
  PYTHONDONTWRITEBYTECODE set (as on the development machine) an editable install would
  otherwise recompile every module on every run, which no installed hpcrun does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def hpcrun_program() -> str:
    """The ``hpcrun`` console script of this interpreter (not a shim), or '' if absent."""
    beside = Path(sys.executable).parent / "hpcrun"
    if beside.exists():
        return str(beside)
    return shutil.which("hpcrun") or ""


def compile_package() -> Path:
    """Byte-compile the installed hpcrun package, as a real install does; its directory."""
    import hpcrun

    package = Path(hpcrun.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    return package

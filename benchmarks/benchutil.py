"""Shared by the whole-process benchmarks: which ``hpcrun`` to run, and byte-compiling it.

* The ``hpcrun`` measured is the console script beside the running interpreter: a pyenv
  shim (a shell script that starts ``pyenv``) would add its own ~60 ms to every run.
* The package is byte-compiled first (``compileall``), as ``pip install`` does.  With
  PYTHONDONTWRITEBYTECODE set (as on the development machine) an editable install would
  otherwise recompile every module on every run, which no installed hpcrun does.
* ``venv_hpcrun()`` installs this checkout into a virtual environment under
  ``benchmarks/out/`` (once), the way a site installs a Python tool for a module.  A venv
  runs none of the base interpreter's ``.pth`` start-up hooks: this sandbox's import
  certifi at every interpreter start (40-60 ms that no cluster's Python pays), so whole-
  process figures taken in the venv show what users of an installed hpcrun wait for.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

OUT = Path(__file__).resolve().parent / "out"
VENV = OUT / "venv-hpcrun"


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


def venv_hpcrun() -> Optional[str]:
    """``hpcrun`` installed from this checkout in a venv under benchmarks/out (built once;
    ``pip install --no-deps -e``: the measured paths need only the standard library, plus
    the zstd and lz4 codec packages), or None when the venv cannot be made here."""
    program = VENV / "bin" / "hpcrun"
    python = VENV / "bin" / "python"
    checkout = Path(__file__).resolve().parent.parent
    marker = VENV / "checkout"
    # Reinstalled when the checkout or its packaging changes (the command is a script).
    stamp = f"{checkout}\ncodecs\n{(checkout / 'pyproject.toml').read_text()}"
    if program.exists() and marker.exists() and marker.read_text() == stamp:
        return str(program)
    try:
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e",
                        str(checkout)], check=True)
        # The optional codec packages a site installs for zstd and lz4 images (best effort).
        subprocess.run([str(python), "-m", "pip", "install", "-q", "zstandard", "lz4"],
                       check=False)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no venv install measured: {exc}", file=sys.stderr)
        return None
    marker.write_text(stamp)
    return str(program)

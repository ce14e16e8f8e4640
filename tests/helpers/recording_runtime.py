"""Recording stand-ins for launchers and container runtimes.

``install_recorders(directory, names)`` writes one small Python program per name
(``apptainer``, ``singularity``, ``srun`` ...) into ``directory``.  Put the directory first
on PATH: when hpcrun execs one of them, it appends one JSON record to the file named by
``$HPCRUN_RECORD`` - its argv (byte for byte, via surrogateescape), its environment, its pid
and parent pid, the program path - and exits with ``$HPCRUN_RECORD_EXIT`` (default 0), or
kills itself with ``$HPCRUN_RECORD_SIGNAL``.  The stand-ins run nothing: they prove what was
exec'd, not what a runtime would do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

_SCRIPT = """#!{python}
import json, os, signal, sys
record = {{
    "program": {name!r},
    "path": os.path.abspath(__file__),
    "argv": sys.argv,
    "env": dict(os.environ),
    "pid": os.getpid(),
    "ppid": os.getppid(),
}}
with open(os.environ["HPCRUN_RECORD"], "a", encoding="utf-8", errors="surrogateescape") as out:
    out.write(json.dumps(record) + "\\n")
sig = os.environ.get("HPCRUN_RECORD_SIGNAL", "")
if sig:
    os.kill(os.getpid(), int(sig))
sys.exit(int(os.environ.get("HPCRUN_RECORD_EXIT", "0")))
"""


def install_recorders(directory: Path, names: Sequence[str] = ("apptainer", "singularity",
                                                               "srun")) -> Path:
    """Write executable recording stand-ins named ``names`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text(_SCRIPT.format(python=sys.executable, name=name))
        path.chmod(0o755)
    return directory


def read_records(path: Path) -> List[Dict[str, Any]]:
    """The JSON records written so far (one per exec'd stand-in)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def recording_env(directory: Path, record: Path, **extra: str) -> Dict[str, str]:
    """An environment with the stand-ins first on PATH and the record file set."""
    env = dict(os.environ)
    env["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', '')}"
    env["HPCRUN_RECORD"] = str(record)
    env.update(extra)
    return env

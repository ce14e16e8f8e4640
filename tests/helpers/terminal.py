"""Run hpcrun's ``main()`` in-process with stdout/stderr shaped like a terminal's."""

from __future__ import annotations

import contextlib
import io
from typing import List, Tuple

from hpcrun.cli.main import main


def run_main(argv: List[str]) -> Tuple[object, bytes, str]:
    """(what ``main(argv)`` returned, the bytes it wrote to stdout, its stderr as text).

    The streams are text streams over a binary buffer, as a terminal's are (hpcrun writes
    bytes there); stderr replaces undecodable bytes with backslash escapes, as Python's own.
    """
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, errors="surrogateescape")
    err = io.TextIOWrapper(err_bytes, errors="backslashreplace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    out.flush()
    err.flush()
    return code, out_bytes.getvalue(), err_bytes.getvalue().decode(errors="replace")

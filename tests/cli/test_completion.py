"""Shell completion, installed with one command and used in REAL interactive shells.

``hpcrun --install-completion`` (typer's, typed in the shell it is for) writes the
completion script under a private ``$HOME``; then bash, zsh and fish are started
interactively on a pseudo-terminal, ``hpcrun si<TAB>`` and ``hpcrun site va<TAB>`` are
typed, and the shell's own line editor must complete the words by asking the installed
``hpcrun``.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict

import pytest

HPCRUN = shutil.which("hpcrun") or ""
# Terminal control sequences (CSI, OSC, keypad modes), carriage returns, bells, backspaces.
ESCAPES = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)"
                     rb"|\x1b[=>()][0-9A-B]?|[\r\x07\x08]")
WHERE = {"bash": ".bash_completions/hpcrun.sh", "zsh": ".zfunc/_hpcrun",
         "fish": ".config/fish/completions/hpcrun.fish"}


def _environment(home: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPCRUN_", "_HPCRUN"))}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), TERM="xterm",
               PATH=f"{Path(HPCRUN).parent}:/usr/bin:/bin", COLUMNS="80", LINES="24")
    env.pop("ZDOTDIR", None)
    return env


def _install(shell: str, home: Path) -> None:
    """The documented one command, typed in the shell it is for (typer asks the process
    tree which shell that is); `; true` keeps the shell from exec'ing hpcrun in its place."""
    done = subprocess.run([shell, "-c", "hpcrun --install-completion; true"],
                          env=_environment(home), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert (home / WHERE[shell]).is_file(), done.stdout


def _controlling_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty on stdin, as a
    terminal emulator gives its shell (fish and zsh's job control need one)."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Interactive:
    """An interactive shell on a pseudo-terminal: type into it, wait for its output."""

    def __init__(self, argv: list, env: Dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                        cwd=env["HOME"], preexec_fn=_controlling_terminal)
        os.close(slave)
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def wait_for(self, needle: bytes, limit: float = 60.0) -> bool:
        """Read until ``needle`` shows (escape sequences removed); False after ``limit`` s
        (a guard against a hang, not a speed check)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    break
                self.seen += chunk
                if needle in re.sub(rb" +", b" ", ESCAPES.sub(b"", self.seen)):
                    return True
        return False

    def close(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        os.close(self.master)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_installs_with_one_command_and_completes(shell: str, tmp_path: Path) -> None:
    if not HPCRUN:
        pytest.skip("the hpcrun entry point is not installed")
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed (.ci/apt-packages.txt)")
    home = tmp_path / "home"
    home.mkdir()
    _install(shell, home)
    term = Interactive([shell, "-i"], _environment(home))
    try:
        marker = b"READY-1"
        term.type("echo READY-$((0+1))\n" if shell != "fish" else "echo READY-(math 0+1)\n")
        assert term.wait_for(marker), term.seen[-2000:]
        term.type("hpcrun si\t")
        if shell == "zsh":
            # typer's zsh script is an autoloaded file whose first run only defines the
            # completion function: the first TAB rings the bell, the next ones complete.
            start = len(term.seen)
            deadline = time.monotonic() + 60
            while b"\x07" not in term.seen[start:] and time.monotonic() < deadline:
                term.wait_for(b"\x00never", limit=0.5)
            term.type("\t")
        assert term.wait_for(b"hpcrun site"), term.seen[-2000:]
        term.type("va\t")
        assert term.wait_for(b"hpcrun site validate"), term.seen[-2000:]
    finally:
        term.close()

"""The one error family of hpcrun.

Every expected failure is an :class:`HpcrunError` carrying a one-line message (what went
wrong and where) and a hint (what to do).  The classes say *what kind* of failure it is;
the CLI turns the kind into an exit code in one place (the table ``EXIT_CODES`` in
``hpcrun.cli.main``, listed in the README); nothing else calls ``sys.exit``.
"""

from __future__ import annotations


class HpcrunError(Exception):
    """Base of all errors hpcrun reports to users."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(HpcrunError):
    """The command line is wrong (no image, nothing to run, bad option)."""


class ConfigError(HpcrunError):
    """A site profile is missing, malformed or invalid, or the plan it gives has errors."""


class ImageError(HpcrunError):
    """The container image is missing, unreadable, corrupt or of an unsupported kind."""


class ElfError(ImageError):
    """A file that should be ELF (or a GNU ld script) could not be understood."""


class EncryptedImageError(ImageError):
    """The image's system partition is encrypted: it cannot be inspected."""


class IncompatibleError(HpcrunError):
    """The resolver's verdict: the host MPI cannot serve this application."""


class EnvironmentNotFoundError(HpcrunError):
    """A program hpcrun needs (launcher, container runtime) is not installed or not on PATH."""


class ExecError(HpcrunError):
    """The operating system refused to start the launcher or runtime (``execve`` failed:
    argument list too long, not an executable, bad interpreter line, permission denied)."""


class OutputError(HpcrunError):
    """hpcrun cannot create or write something it needs on the host (the Charliecloud
    stage directory, an output file): permissions, a full disk, a read-only file system."""


# Hints shared by the image and ELF readers (what a user can do about a bad file).
HINT_ACCESS = "check the file's permissions and that its file system is readable"
HINT_TRUNCATED = ("the image file is incomplete (an interrupted copy or download?): copy or "
                  "download it again")
HINT_DAMAGED = ("the image file is damaged: rebuild it, or copy or download it again and "
                "compare its checksum")
HINT_INSIDE = "check the path inside the image (`hpcrun inspect IMAGE` shows what it holds)"
HINT_NOT_ELF = "the file is not a shared library or program: check what the path names"

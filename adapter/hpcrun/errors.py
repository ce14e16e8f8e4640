"""The one error family of hpcrun.

Every expected failure is an :class:`HpcrunError` carrying a one-line message (what went
wrong and where) and a hint (what to do).  The CLI turns them into exit codes in one place
(``hpcrun.cli.main``); nothing else calls ``sys.exit``.
"""

from __future__ import annotations


class HpcrunError(Exception):
    """Base of all errors hpcrun reports to users."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(HpcrunError):
    """The command line is wrong (no image, nothing to run, bad option)."""

    exit_code = 2


class ConfigError(HpcrunError):
    """A site profile is missing, malformed or invalid."""

    exit_code = 3


class ImageError(HpcrunError):
    """The container image is missing, unreadable, corrupt or of an unsupported kind."""

    exit_code = 4


class ElfError(ImageError):
    """A file that should be ELF (or a GNU ld script) could not be understood."""


class EncryptedImageError(ImageError):
    """The image's system partition is encrypted: it cannot be inspected."""


class IncompatibleError(HpcrunError):
    """The resolver's verdict: the host MPI cannot serve this application."""

    exit_code = 5


class EnvironmentNotFoundError(HpcrunError):
    """A program hpcrun needs (launcher, container runtime) is not installed or not on PATH."""

    exit_code = 6


# Exit codes, for documentation and tests.
EXIT_OK = 0
EXIT_ERROR = HpcrunError.exit_code
EXIT_USAGE = UsageError.exit_code
EXIT_CONFIG = ConfigError.exit_code
EXIT_IMAGE = ImageError.exit_code
EXIT_INCOMPATIBLE = IncompatibleError.exit_code
EXIT_NOT_FOUND = EnvironmentNotFoundError.exit_code

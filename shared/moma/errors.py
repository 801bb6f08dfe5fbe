"""Errors a person can act on.

Every error the project raises on bad input derives from :class:`MomaError`; the CLIs turn it
into one line on stderr and a typed, non-zero exit code instead of a traceback. The message
names the file or record at fault and says how to fix it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of ``moma-client`` and ``moma-hub`` (0 is success)."""

    SUCCESS = 0
    USAGE = 2
    BAD_DATA = 3
    BAD_MODULE = 4
    INCOMPATIBLE = 5
    NETWORK = 6
    TRUST = 7
    NOT_FOUND = 8
    INTERNAL = 10


class MomaError(Exception):
    """Base class: a problem with input that the user can fix."""

    exit_code: ExitCode = ExitCode.USAGE


class DataError(MomaError):
    """A dataset, record or structure that cannot be used."""

    exit_code = ExitCode.BAD_DATA


class ModuleFormatError(MomaError):
    """A module file (safetensors + card) that is malformed, unsafe or does not fit its backbone."""

    exit_code = ExitCode.BAD_MODULE


class IncompatibleModulesError(MomaError):
    """Modules that cannot be combined (different backbone or base)."""

    exit_code = ExitCode.INCOMPATIBLE


class TrustError(MomaError):
    """A signature, key or manifest that does not verify."""

    exit_code = ExitCode.TRUST

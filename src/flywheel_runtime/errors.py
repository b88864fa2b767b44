"""Errors a user can act on, each with its own process exit code.

Every command turns a :class:`FlywheelError` into exactly one line on stderr
(``flywheel-runtime: <message>``) and its :attr:`exit_code`.  The table is the
public contract documented in the README; never reuse a number.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # a check, guard or canary ran and found a violation
    USAGE = 2  # bad command line (argparse's own code)
    TOPOLOGY_INVALID = 3  # topology file missing, unparsable or failing the schema
    KUBECONFIG = 4  # no kubeconfig, or the cluster cannot be reached
    NO_SPACE = 5  # ENOSPC / EDQUOT on a target volume
    DEVICE_ABSENT = 6  # a declared device (kvm, dri, GPU) is missing or unusable
    SOURCE_MISSING = 7  # an input path (e.g. seed source) does not exist
    PERMISSION = 8  # EACCES / EPERM
    BUILD = 9  # toolchain missing or a build failed (cluster binaries)
    UNSUPPORTED = 10  # the thing cannot run on this stack (e.g. Dawn rejects the adapter)
    LOCKED = 11  # another process holds a lock we waited on too long
    CLUSTER = 12  # cluster backend failed to start or settle
    TIMEOUT = 13  # a bounded wait ran out (settle deadline, drain)
    PLAN_CHANGED = 14  # managed apply: the fresh post-quiesce plan differs from the scoped one (refused)
    INTERRUPTED = 15  # managed apply: stopped by SIGINT/SIGTERM, caps restored best-effort
    SCOPE_CONFLICT = 16  # managed apply: it runs on a lane it would quiesce
    INTERNAL = 70  # a bug: anything not anticipated


class FlywheelError(Exception):
    """Base class: ``str(err)`` is the single line shown to the user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class TopologyError(FlywheelError):
    exit_code = ExitCode.TOPOLOGY_INVALID


class KubeconfigError(FlywheelError):
    exit_code = ExitCode.KUBECONFIG


class NoSpaceError(FlywheelError):
    exit_code = ExitCode.NO_SPACE


class DeviceAbsentError(FlywheelError):
    exit_code = ExitCode.DEVICE_ABSENT


class SourceMissingError(FlywheelError):
    exit_code = ExitCode.SOURCE_MISSING


class PermissionDeniedError(FlywheelError):
    exit_code = ExitCode.PERMISSION


class BuildError(FlywheelError):
    exit_code = ExitCode.BUILD


class UnsupportedError(FlywheelError):
    exit_code = ExitCode.UNSUPPORTED


class LockedError(FlywheelError):
    exit_code = ExitCode.LOCKED


class ClusterError(FlywheelError):
    exit_code = ExitCode.CLUSTER


class DeadlineError(FlywheelError):
    exit_code = ExitCode.TIMEOUT

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
    TARGET_REFUSED = 17  # seed-nix: the target is empty, overlaps the source, holds data it never seeded, or a special file
    OUTPUT_UNUSABLE = 18  # a file the runtime path must write (GITHUB_ENV) is not a writable regular file
    WORKSPACE_LEFT = 19  # job-completed could not remove all of the previous job's workspace
    ACTIONS_UNREACHABLE = 20  # the Actions service double: none found, unreachable, or it cannot listen
    ARC_CONTROLLER_IMAGE = 21  # cluster up --arc: no ARC controller image given, or the one given cannot be loaded
    INTERNAL = 70  # a bug: anything not anticipated (the traceback only with --debug / FLYWHEEL_DEBUG=1)
    NOT_EXECUTABLE = 126  # entrypoint: the command exists but cannot be executed (the shell's code)
    NOT_FOUND = 127  # entrypoint: the command was not found (the shell's code)
    KEYBOARD_INTERRUPT = 130  # Ctrl-C: 128 + SIGINT, as the shell reports it


class FlywheelError(Exception):
    """Base class: ``str(err)`` is the single line shown to the user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ArcControllerImageError(FlywheelError):
    exit_code = ExitCode.ARC_CONTROLLER_IMAGE


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


class TargetRefusedError(FlywheelError):
    exit_code = ExitCode.TARGET_REFUSED


class OutputUnusableError(FlywheelError):
    exit_code = ExitCode.OUTPUT_UNUSABLE


class WorkspaceLeftError(FlywheelError):
    exit_code = ExitCode.WORKSPACE_LEFT

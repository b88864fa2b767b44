#!/usr/bin/env bash
# ACTIONS_RUNNER_HOOK_JOB_COMPLETED: job duration and the workspace policy
# (see flywheel_runtime.hooks.jobhooks).  Runs as `bash -e FILE` after the job.
exec "${FLYWHEEL_RUNTIME_BIN:-/opt/flywheel/venv/bin/flywheel-runtime}" hook job-completed "$@"

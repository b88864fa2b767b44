#!/usr/bin/env bash
# ACTIONS_RUNNER_HOOK_JOB_STARTED.  The runner accepts only a .sh/.ps1 path and
# runs it as `bash -e FILE` before the job's first step; a non-zero exit fails
# the job.  The work (hints, device refusal) is `flywheel-runtime hook`.
exec "${FLYWHEEL_RUNTIME_BIN:-/opt/flywheel/venv/bin/flywheel-runtime}" hook job-started "$@"

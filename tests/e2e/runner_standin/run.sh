#!/usr/bin/env bash
# TEST-ONLY STAND-IN for the GitHub runner's /home/runner/run.sh.  The real runner
# needs GitHub (registration, a job from the service) and cannot be had offline.
# This runs what the runner runs around a job, the way it runs it: the
# ACTIONS_RUNNER_HOOK_JOB_STARTED hook as `bash -e FILE` ("Set up runner"; a
# non-zero exit fails the job and no step runs), the scripted job
# ($FLYWHEEL_STANDIN_JOB, bash -e, in $GITHUB_WORKSPACE, with what the hook
# wrote to $GITHUB_ENV in its environment), then the _COMPLETED hook ("Complete
# runner").  The e2e tests mount it over run.sh from a ConfigMap; no image ships it.
# Last line: `standin: result {"started": RC, "job": RC, "completed": RC}`; exit 0
# only when all three are 0.
set -uo pipefail
echo "standin: start $(date +%s.%N)"
work=/home/runner/_work
export RUNNER_TEMP=$work/_temp RUNNER_WORKSPACE=$work/repo GITHUB_WORKSPACE=$work/repo/repo
export GITHUB_ENV=$RUNNER_TEMP/_runner_file_commands/set_env
export GITHUB_STEP_SUMMARY=$RUNNER_TEMP/_runner_file_commands/step_summary
export GITHUB_RUN_ID=${GITHUB_RUN_ID:-1} GITHUB_JOB=${GITHUB_JOB:-standin}
mkdir -p "$GITHUB_WORKSPACE" "$(dirname "$GITHUB_ENV")"
: >"$GITHUB_ENV"
: >"$GITHUB_STEP_SUMMARY"
# what the image's entrypoint left before exec'ing this script
hints=${FLYWHEEL_HINTS_FILE:-}
if [ -n "$hints" ] && [ -s "$hints" ]; then
  echo "standin: entrypoint hints $hints $(wc -c <"$hints")"
else
  echo "standin: entrypoint hints none 0"
fi
started=0 job=-1 completed=0
bash -e "$ACTIONS_RUNNER_HOOK_JOB_STARTED" || started=$?
if [ "$started" -eq 0 ]; then
  # the runner hands GITHUB_ENV's KEY=VALUE lines to the following steps
  while IFS= read -r line; do
    [[ $line == *=* ]] && export "${line%%=*}=${line#*=}"
  done <"$GITHUB_ENV"
  (cd "$GITHUB_WORKSPACE" && bash -e -c "${FLYWHEEL_STANDIN_JOB:-true}")
  job=$?
fi
bash -e "$ACTIONS_RUNNER_HOOK_JOB_COMPLETED" || completed=$?
echo "standin: summary $(base64 -w0 <"$GITHUB_STEP_SUMMARY")"
echo "standin: result {\"started\": $started, \"job\": $job, \"completed\": $completed}"
[ "$started" -eq 0 ] && [ "$job" -eq 0 ] && [ "$completed" -eq 0 ]

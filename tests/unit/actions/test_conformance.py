"""Conformance: the project's Go program drives the double with github.com/actions/scaleset v0.2.0.

That module is the client and listener loop ARC 0.14.0's controller and
listener are built on: every call the controller makes (registration token,
admin JWT, runner group, scale-set get/create/update/delete, generatejitconfig,
runner lookup, removal twice, JobStillRunning) and the listener loop through
two jobs' messages (session, 202, 401 and refresh, JobAssigned, JobStarted,
JobCompleted with statistics, acks).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flywheel_runtime.actions import ActionsDouble
from flywheel_runtime.toolchain.build import module_key as source_key
from tests.unit.actions.conformance import build_conformance

EXPECTED_CHECKS = {
    "registration token, admin JWT, scale set by name (absent)",
    "runner group by name",
    "GitHub App auth: installation token, registration token, admin JWT",
    "create scale set: 200 with id",
    "scale set by name",
    "scale set by id",
    "update scale set (regroup)",
    "generatejitconfig",
    "generatejitconfig for an existing name: AgentExists",
    "runner by name",
    "runner by id",
    "remove an idle runner twice: 204 both",
    "runner by name after removal: none",
    "create message session",
    "session: id, statistics, absolute queue URL, token",
    "empty queue: 202 within 5 s",
    "401 on the queue: session refreshed",
    "JobStarted names its runner",
    "remove runner while its job runs: JobStillRunning",
    "held job: the runner's report waits for the release",
    "release the held job",
    "JobCompleted carries result and runner",
    "remove a finished runner twice: 204 both",
    "listener loop ends once both jobs completed",
    "runner: acquire, started, completed",
    "messages: JobAssigned, JobStarted, JobCompleted for each job",
    "every message acked once",
    "statistics: totalAssignedJobs rises to 2 and returns to 0",
    "desired runners: min(minRunners + assigned, maxRunners) up to 2 and back to 0",
    "delete message session: 204",
    "delete scale set: 204",
    "scale set by name after deletion: none",
}


@pytest.fixture(scope="session")
def conformance_binary() -> Path:
    """Built once per machine (cached on go.mod, go.sum and the sources), not per run."""
    return build_conformance()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ActionsDouble]:
    with ActionsDouble(long_poll=1.0, log=tmp_path / "requests.jsonl") as d:
        yield d


def _run(binary: Path, double: ActionsDouble) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = subprocess.run([str(binary), "-config-url", double.config_url("flywheel-org"), "-timeout", "90s"],
                         capture_output=True, text=True, timeout=150)
    return out, json.loads(out.stdout)


def test_scaleset_client_and_listener_conform(conformance_binary: Path, served: ActionsDouble, tmp_path: Path) -> None:
    out, report = _run(conformance_binary, served)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert out.returncode == 0 and report["ok"] and not failed, failed
    assert EXPECTED_CHECKS <= {c["name"] for c in report["checks"]}
    kinds = [t for m in report["messages"] for t in m["types"]]
    assert sorted(kinds) == sorted(["JobAssigned"] * 2 + ["JobStarted"] * 2 + ["JobCompleted"] * 2)
    assert report["acks"] == [m["id"] for m in report["messages"]]
    assert report["desired"][0] == 0 and max(report["desired"]) == 2 and report["desired"][-1] == 0
    assert report["emptyPollSeconds"] < 5

    # the double saw every call the way ARC sends it, and answered no 5xx
    log = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert not [x for x in log if x["status"] >= 500]
    seen = {(x["method"], x["status"], x.get("typeName")) for x in log}
    for want in (("POST", 201, None), ("DELETE", 204, None), ("GET", 202, None), ("PATCH", 200, None),
                 ("DELETE", 400, "JobStillRunningException"), ("POST", 409, "AgentExistsException")):
        assert want in seen, want
    assert all("api-version=6.0-preview" in x["path"] for x in log if "/_apis/" in x["path"])


def test_the_program_fails_against_a_service_that_breaks_the_contract(conformance_binary: Path, tmp_path: Path) -> None:
    """A double that answers the second removal with 404 (what ARC does not tolerate) fails the run."""
    from flywheel_runtime.actions._service import Service, ServiceError

    class Strict(Service):
        def remove_runner(self, runner_id: int) -> None:
            with self._cond:
                r = self._runners.get(runner_id)
                if r is not None and r.removed:
                    raise ServiceError(404, "AgentNotFoundException", "gone")
            super().remove_runner(runner_id)

    with ActionsDouble(long_poll=1.0, log=tmp_path / "log") as d:
        d.service.__class__ = Strict
        out, report = _run(conformance_binary, d)
    assert out.returncode == 1 and not report["ok"]
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert "remove an idle runner twice: 204 both" in failed


def test_the_build_is_keyed_on_the_program(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[3] / "conformance" / "actions"
    copy = tmp_path / "src"
    copy.mkdir()
    for f in ("go.mod", "go.sum", "main.go"):
        (copy / f).write_bytes((src / f).read_bytes())
    assert source_key(copy) == source_key(src)
    (copy / "main.go").write_text((src / "main.go").read_text() + "\n// changed\n")
    assert source_key(copy) != source_key(src)

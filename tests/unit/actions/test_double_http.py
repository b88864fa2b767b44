"""The double over HTTP, call by call, as ARC 0.14.0's controller and listener make them."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from flywheel_runtime.actions import ActionsDouble, decode_jit
from tests.unit.actions.wire import Admin, Reply, ack, authenticate, call, messages, poll

STAT_KEYS = {"totalAvailableJobs", "totalAcquiredJobs", "totalAssignedJobs", "totalRunningJobs",
             "totalRegisteredRunners", "totalBusyRunners", "totalIdleRunners"}


def _b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _runner(url: str, jit: str, action: str, body: dict | None = None, query: str = "") -> Reply:
    return call(url, "POST", f"/_flywheel/runner/{jit}/{action}{query}", body or {})


# --- auth -------------------------------------------------------------------------------


def test_registration_token_is_201_for_org_repo_and_enterprise_and_needs_a_token(double: ActionsDouble) -> None:
    for scope in ("orgs/acme", "repos/acme/app", "enterprises/big"):
        r = call(double.url, "POST", f"/api/v3/{scope}/actions/runners/registration-token", token="pat")
        assert r.status == 201 and r.body["token"] and r.body["expires_at"].endswith("Z"), (scope, r.body)
    assert call(double.url, "POST", "/api/v3/orgs/acme/actions/runners/registration-token").status == 401


def test_runner_registration_gives_the_actions_url_and_an_hs256_jwt(double: ActionsDouble) -> None:
    reg = call(double.url, "POST", "/api/v3/orgs/acme/actions/runners/registration-token", token="pat").body["token"]
    r = call(double.url, "POST", "/api/v3/actions/runner-registration", {"url": f"{double.url}/acme",
             "runner_event": "register"}, token=reg, scheme="RemoteAuth",
             headers={"Host": "actions-double.arc-systems.svc:8080"})
    assert r.status == 200
    assert r.body["url"] == "http://actions-double.arc-systems.svc:8080/_actions/"  # the address the client used
    header, claims, sig = r.body["token"].split(".")
    assert _b64json(header)["alg"] == "HS256" and sig
    assert isinstance(claims_exp := _b64json(claims)["exp"], int) and claims_exp > time.time() + 600
    bad = call(double.url, "POST", "/api/v3/actions/runner-registration", {"url": "x"}, token="never-issued",
               scheme="RemoteAuth")
    assert bad.status == 401 and bad.body["typeName"] == "UnauthorizedException"


def test_actions_calls_need_a_jwt_it_issued_and_unexpired(double: ActionsDouble, admin: Admin, tmp_path: Path) -> None:
    sub = "/_actions/_apis/runtime/runnerscalesets?name=x&api-version=6.0-preview"
    assert admin("GET", "_apis/runtime/runnerscalesets?name=x").status == 200
    assert call(double.url, "GET", sub).status == 401
    h, c, _s = admin.jwt.split(".")
    assert call(double.url, "GET", sub, token=f"{h}.{c}.{'A' * 43}").status == 401  # not signed here
    with ActionsDouble(jwt_ttl=0, log=tmp_path / "log") as short:
        stale = authenticate(short.url)
        assert stale("GET", "_apis/runtime/runnerscalesets?name=x").status == 401


def test_public_url_is_used_for_every_url_handed_out(tmp_path: Path) -> None:
    with ActionsDouble(public_url="http://double.svc:9000/", log=tmp_path / "log") as d:
        a = authenticate(d.url)
        assert a.base == "/_actions"
        s = a.scale_set("lane")
        assert s["runnerJitConfigUrl"].startswith("http://double.svc:9000/_actions/")
        assert a.session(s["id"])["messageQueueUrl"].startswith("http://double.svc:9000/_message-queue/")
        assert decode_jit(a.jit(s["id"], "r1")["encodedJITConfig"])["serverUrl"] == "http://double.svc:9000"


# --- runner groups and scale sets ---------------------------------------------------------


def test_runner_groups_resolve_default_and_any_named_group(admin: Admin) -> None:
    d = admin("GET", "_apis/runtime/runnergroups/?groupName=Default").body
    assert d["count"] == 1 and d["value"][0]["id"] == 1 and d["value"][0]["isDefaultGroup"]
    g = admin("GET", "_apis/runtime/runnergroups/?groupName=lanes").body["value"][0]
    assert g["id"] > 1 and g["name"] == "lanes"
    assert admin("GET", "_apis/runtime/runnergroups/?groupName=lanes").body["value"][0]["id"] == g["id"]


def test_scale_set_crud(admin: Admin) -> None:
    assert admin("GET", "_apis/runtime/runnerscalesets?runnerGroupId=1&name=tinyland-nix").body == {"count": 0, "value": []}
    created = admin.scale_set("tinyland-nix")
    assert created["id"] > 0 and created["runnerGroupName"] == "Default" and created["labels"] == [
        {"type": "System", "name": "tinyland-nix"}]
    assert created["statistics"]["totalAssignedJobs"] == 0
    dup = admin("POST", "_apis/runtime/runnerscalesets", {"name": "tinyland-nix", "runnerGroupId": 1})
    assert dup.status == 409
    found = admin("GET", "_apis/runtime/runnerscalesets?runnerGroupId=1&name=tinyland-nix").body
    assert found["count"] == 1 and found["value"][0]["id"] == created["id"]
    gid = admin("GET", "_apis/runtime/runnergroups/?groupName=lanes").body["value"][0]["id"]
    patched = admin("PATCH", f"_apis/runtime/runnerscalesets/{created['id']}", {"name": "tinyland-nix-2", "runnerGroupId": gid})
    assert patched.status == 200 and patched.body["name"] == "tinyland-nix-2" and patched.body["runnerGroupName"] == "lanes"
    assert admin("GET", f"_apis/runtime/runnerscalesets/{created['id']}").body["runnerGroupId"] == gid
    assert admin("DELETE", f"_apis/runtime/runnerscalesets/{created['id']}").status == 204
    assert admin("DELETE", f"_apis/runtime/runnerscalesets/{created['id']}").status == 204
    gone = admin("GET", f"_apis/runtime/runnerscalesets/{created['id']}")
    assert gone.status == 404 and gone.body["typeName"] == "RunnerScaleSetNotFoundException"


# --- sessions and the message queue -----------------------------------------------------------


def test_session_has_statistics_and_an_absolute_queue_url_from_the_host_used(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    r = call(double.url, "POST", f"/_actions/_apis/runtime/runnerscalesets/{s['id']}/sessions?api-version=6.0-preview",
             {"sessionId": "00000000-0000-0000-0000-000000000000", "ownerName": "lane-abc-listener"},
             token=admin.jwt, headers={"Host": "double.arc-systems.svc:8080"})
    assert r.status == 200
    assert set(r.body["statistics"]) == STAT_KEYS and all(isinstance(v, int) for v in r.body["statistics"].values())
    assert r.body["messageQueueUrl"].startswith("http://double.arc-systems.svc:8080/_message-queue/")
    assert r.body["ownerName"] == "lane-abc-listener" and r.body["runnerScaleSet"]["id"] == s["id"]
    assert r.body["sessionId"] != "00000000-0000-0000-0000-000000000000" and r.body["messageQueueAccessToken"]


def test_an_empty_queue_answers_202_promptly(tmp_path: Path) -> None:
    with ActionsDouble(long_poll=1.0, log=tmp_path / "log") as d:  # the real service holds ~50 s
        a = authenticate(d.url)
        sess = a.session(a.scale_set("lane")["id"])
        r = poll(sess)
        assert r.status == 202 and r.body is None
        assert r.seconds < 10  # a bound, not a timing target: configured for 1 s


def test_a_queued_job_wakes_a_waiting_poll(tmp_path: Path) -> None:
    with ActionsDouble(long_poll=30.0, log=tmp_path / "log") as d:
        a = authenticate(d.url)
        sess = a.session(a.scale_set("lane")["id"])
        got: list[Reply] = []
        t = threading.Thread(target=lambda: got.append(poll(sess)))
        t.start()
        time.sleep(0.3)
        d.queue("lane")
        t.join(timeout=20)
        assert got and got[0].status == 200 and got[0].seconds < 20


def test_messages_body_is_a_json_string_of_an_array_and_acks_end_redelivery(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    sess = admin.session(s["id"])
    double.queue("lane", count=2)
    r = poll(sess)
    assert r.status == 200 and r.body["messageType"] == "RunnerScaleSetJobMessages"
    assert isinstance(r.body["body"], str)
    entries = json.loads(r.body["body"])
    assert [e["messageType"] for e in entries] == ["JobAssigned", "JobAssigned"]
    for e in entries:
        assert {"runnerRequestId", "repositoryName", "ownerName", "jobId", "jobWorkflowRef", "jobDisplayName",
                "workflowRunId"} <= set(e)
        assert e["ownerName"] == "flywheel-org"  # the org of the githubConfigUrl
    assert r.body["statistics"]["totalAssignedJobs"] == 2
    mid = r.body["messageId"]
    assert poll(sess, last=mid).status == 202  # nothing newer
    assert poll(sess).body["messageId"] == mid  # not acked: delivered again
    assert ack(sess, mid).status == 204
    assert poll(sess).status == 202


def test_queue_token_401_then_session_refresh(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    sess = admin.session(s["id"])
    assert poll(sess, token="wrong").status == 401
    assert call(double.url, "POST", "/_flywheel/sessions/expire", {}).body == {"sessions": 1}
    assert poll(sess).status == 401
    fresh = admin("PATCH", f"_apis/runtime/runnerscalesets/{s['id']}/sessions/{sess['sessionId']}")
    assert fresh.status == 200 and fresh.body["sessionId"] == sess["sessionId"]
    assert fresh.body["messageQueueAccessToken"] != sess["messageQueueAccessToken"]
    assert poll(fresh.body).status == 202
    assert admin("PATCH", f"_apis/runtime/runnerscalesets/{s['id']}/sessions/not-a-session").status == 404
    assert admin("DELETE", f"_apis/runtime/runnerscalesets/{s['id']}/sessions/{sess['sessionId']}").status == 204
    assert poll(fresh.body).status == 401  # the session is gone


def test_a_new_session_supersedes_the_last(admin: Admin) -> None:
    s = admin.scale_set("lane")
    old, new = admin.session(s["id"], "old-listener"), admin.session(s["id"], "new-listener")
    assert poll(old).status == 401 and poll(new).status == 202


def test_capacity_from_the_listener_holds_a_burst_at_max_runners(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("tinyland-docker", labels=["tinyland-docker"])
    sess = admin.session(s["id"])
    assert poll(sess, capacity=2).status == 202
    jobs = double.queue("tinyland-docker", count=5)
    states = {j["id"]: j["state"] for j in double.jobs()}
    assert sorted(states.values()) == ["assigned", "assigned", "queued", "queued", "queued"]
    r = poll(sess, capacity=2)
    assert r.body["statistics"]["totalAssignedJobs"] == 2 and r.body["statistics"]["totalAvailableJobs"] == 3
    ack(sess, r.body["messageId"])
    jit = admin.jit(s["id"], "runner-1")["encodedJITConfig"]
    job = _runner(double.url, jit, "acquire").body["job"]
    assert job["id"] == jobs[0]["id"]
    _runner(double.url, jit, "started", {"node": "sting"})
    assert _runner(double.url, jit, "completed", {"result": "succeeded"}).body["job"]["state"] == "completed"
    assert sorted(j["state"] for j in double.jobs()) == ["assigned", "assigned", "completed", "queued", "queued"]
    kinds = [e["messageType"] for e in messages(sess, capacity=2)]
    assert kinds == ["JobStarted", "JobCompleted", "JobAssigned"]


def test_jobs_go_to_the_set_publishing_their_label(double: ActionsDouble, admin: Admin) -> None:
    nix = admin.scale_set("owner-a-nix", labels=["tinyland-nix"])
    docker = admin.scale_set("owner-b-docker", labels=["tinyland-docker"])
    double.queue("tinyland-docker")
    double.queue("owner-a-nix")  # a set's name is a label too
    double.queue("nobody-publishes-this")
    jobs = double.jobs()
    assert [j["scale_set"] for j in jobs] == ["owner-b-docker", "owner-a-nix", None]
    assert [j["state"] for j in jobs] == ["assigned", "assigned", "queued"]
    assert admin("GET", f"_apis/runtime/runnerscalesets/{docker['id']}").body["statistics"]["totalAssignedJobs"] == 1
    assert admin("GET", f"_apis/runtime/runnerscalesets/{nix['id']}").body["statistics"]["totalAssignedJobs"] == 1


def test_deleting_a_set_requeues_the_jobs_no_runner_took(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    double.queue("lane")
    assert double.jobs()[0]["state"] == "assigned"
    admin("DELETE", f"_apis/runtime/runnerscalesets/{s['id']}")
    assert double.jobs()[0]["state"] == "queued" and double.jobs()[0]["scale_set"] is None
    admin.scale_set("lane")
    assert double.jobs()[0]["state"] == "assigned"


# --- runners: JIT config, lookup, removal, JobStillRunning ---------------------------------------


def test_generatejitconfig_lookup_and_agent_exists(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    cfg = admin.jit(s["id"], "lane-abcde-runner-x1")
    runner = cfg["runner"]
    assert runner["id"] > 0 and runner["name"] == "lane-abcde-runner-x1" and runner["runnerScaleSetId"] == s["id"]
    doc = decode_jit(cfg["encodedJITConfig"])
    assert (doc["runnerId"], doc["runnerName"], doc["scaleSetId"]) == (runner["id"], runner["name"], s["id"])
    again = admin("POST", f"_apis/runtime/runnerscalesets/{s['id']}/generatejitconfig", {"name": "lane-abcde-runner-x1"})
    assert again.status == 409 and again.body["typeName"] == "AgentExistsException"
    by_name = admin("GET", "_apis/distributedtask/pools/0/agents?agentName=lane-abcde-runner-x1").body
    assert by_name["count"] == 1 and by_name["value"][0]["id"] == runner["id"]
    assert admin("GET", f"_apis/distributedtask/pools/0/agents/{runner['id']}").body["name"] == runner["name"]
    assert admin("GET", "_apis/distributedtask/pools/0/agents/999").status == 404
    assert call(double.url, "GET", f"/_flywheel/runner/{cfg['encodedJITConfig']}").body["runner"]["id"] == runner["id"]
    assert call(double.url, "POST", "/_flywheel/runner/bm90LWEtaml0/acquire", {}).status == 404


def test_removal_is_idempotent_and_job_still_running_while_the_job_runs(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    sess = admin.session(s["id"])
    idle = admin.jit(s["id"], "idle")["runner"]["id"]
    for _ in range(2):  # scale-down removes it, then the finalizer does
        assert admin("DELETE", f"_apis/distributedtask/pools/0/agents/{idle}").status == 204
    assert admin("DELETE", "_apis/distributedtask/pools/0/agents/424242").status == 204  # never seen: still 204
    assert admin("GET", "_apis/distributedtask/pools/0/agents?agentName=idle").body["count"] == 0

    [job] = double.queue("lane", hold=True)
    cfg = admin.jit(s["id"], "busy")
    busy, jit = cfg["runner"]["id"], cfg["encodedJITConfig"]
    assert _runner(double.url, jit, "acquire").body["job"]["runner"] == "busy"
    still = admin("DELETE", f"_apis/distributedtask/pools/0/agents/{busy}")
    assert still.status == 400 and still.body["typeName"] == "JobStillRunningException"  # acquired counts
    assert _runner(double.url, jit, "started", {"node": "honey"}).body["job"]["state"] == "started"
    done = _runner(double.url, jit, "completed", {"result": "succeeded", "wait": 0.2}).body["job"]
    assert done["state"] == "started" and done["held"]  # held: the job runs on
    assert admin("DELETE", f"_apis/distributedtask/pools/0/agents/{busy}").body["typeName"] == "JobStillRunningException"
    [released] = call(double.url, "POST", "/_flywheel/release", {"ids": [job["id"]]}).body["jobs"]
    assert released["state"] == "completed" and released["result"] == "succeeded"  # what its runner reported
    assert admin("DELETE", f"_apis/distributedtask/pools/0/agents/{busy}").status == 204
    assert admin("DELETE", f"_apis/distributedtask/pools/0/agents/{busy}").status == 204
    gone = _runner(double.url, jit, "acquire")
    assert gone.status == 410
    entries = messages(sess)
    assert [e["messageType"] for e in entries] == ["JobAssigned", "JobStarted", "JobCompleted"]
    assert entries[1]["runnerName"] == entries[2]["runnerName"] == "busy" and entries[2]["result"] == "succeeded"


# --- jobs: the lifecycle, hold and release -----------------------------------------------------------


def test_job_lifecycle_fields(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    [queued] = call(double.url, "POST", "/_flywheel/jobs", {"label": "lane", "count": 1, "script": "echo hi"}).body["jobs"]
    jit = admin.jit(s["id"], "lane-runner")["encodedJITConfig"]
    assert _runner(double.url, jit, "acquire", query="?wait=5").body["job"]["script"] == "echo hi"
    _runner(double.url, jit, "started", {"node": "honey"})
    _runner(double.url, jit, "completed", {"result": "failed"})
    job = call(double.url, "GET", f"/_flywheel/jobs/{queued['id']}").body["job"]
    assert (job["state"], job["runner"], job["node"], job["result"]) == ("completed", "lane-runner", "honey", "failed")
    times = [job[k] for k in ("queued_at", "assigned_at", "started_at", "completed_at")]
    assert all(isinstance(t, float) for t in times) and times == sorted(times)
    assert call(double.url, "GET", "/_flywheel/jobs").body["jobs"] == [job]


def test_acquire_waits_and_answers_204_without_a_job(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    jit = admin.jit(s["id"], "r")["encodedJITConfig"]
    assert _runner(double.url, jit, "acquire", query="?wait=0.2").status == 204
    assert _runner(double.url, jit, "started", {}).status == 409  # no job yet


def test_release_semantics(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    a, b = double.queue("lane", count=2, hold=True)
    jit = admin.jit(s["id"], "r1")["encodedJITConfig"]
    _runner(double.url, jit, "acquire")
    _runner(double.url, jit, "started", {"node": "honey"})
    # a started job whose runner never reported (its pod deleted mid-job) ends canceled
    [ra] = double.release([a["id"]])
    assert (ra["state"], ra["result"], ra["held"]) == ("completed", "canceled", False)
    # a job not started yet only loses its hold
    [rb] = call(double.url, "POST", "/_flywheel/release", {"all": True}).body["jobs"]
    assert (rb["id"], rb["state"], rb["held"]) == (b["id"], "assigned", False)
    assert call(double.url, "POST", "/_flywheel/release", {"all": True}).body["jobs"] == []
    missing = call(double.url, "POST", "/_flywheel/release", {"ids": [999]})
    assert missing.status == 404 and "no job 999" in missing.body["message"]


def test_errors_are_4xx_never_5xx_and_every_request_is_logged(double: ActionsDouble, admin: Admin, tmp_path: Path) -> None:
    assert call(double.url, "POST", "/_flywheel/jobs", raw=b"{not json").status == 400
    assert call(double.url, "POST", "/_flywheel/jobs", {"label": "x", "count": 0}).status == 400
    assert call(double.url, "GET", "/nothing/here").status == 404
    assert admin("PUT", "_apis/runtime/runnerscalesets").status == 404
    # The server logs a request once its answer is out: the last line can trail the answer.
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
        if len(lines) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(lines) >= 6  # auth (2) + the four above
    assert all({"ts", "method", "path", "status", "ms", "client"} <= set(x) for x in lines)
    assert not [x for x in lines if x["status"] >= 500]
    bad = [x for x in lines if x["path"] == "/_flywheel/jobs"]
    assert [x["status"] for x in bad] == [400, 400] and bad[0]["typeName"] == "ArgumentException"
    recent = call(double.url, "GET", "/_flywheel/requests").body["requests"]
    assert recent[: len(lines)] == lines


def test_scale_sets_view_shows_sessions_runners_and_capacity(double: ActionsDouble, admin: Admin) -> None:
    s = admin.scale_set("lane")
    sess = admin.session(s["id"], "lane-listener")
    poll(sess, capacity=3)
    admin.jit(s["id"], "r1")
    [view] = call(double.url, "GET", "/_flywheel/scalesets").body["scaleSets"]
    assert view["session"]["ownerName"] == "lane-listener" and view["capacity"] == 3
    assert [r["name"] for r in view["runners"]] == ["r1"] and view["statistics"]["totalIdleRunners"] == 1
    assert urlsplit(sess["messageQueueUrl"]).hostname == "127.0.0.1"


def test_github_app_auth_gets_an_installation_token_first(double: ActionsDouble) -> None:
    r = call(double.url, "POST", "/api/v3/app/installations/678/access_tokens", token="app.jwt.rs256")
    assert r.status == 201 and r.body["token"].startswith("ghs_") and r.body["expires_at"]
    assert call(double.url, "POST", "/api/v3/app/installations/678/access_tokens").status == 401
    reg = call(double.url, "POST", "/api/v3/orgs/acme/actions/runners/registration-token", token=r.body["token"])
    assert reg.status == 201

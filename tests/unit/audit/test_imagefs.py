"""audit imagefs over offline kubelet stats-summary fixtures, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flywheel_runtime.audit.imagefs import CRITICAL, HEALTHY, WARNING, Thresholds, audit_summary, classify
from flywheel_runtime.cli import main
from flywheel_runtime.errors import ClusterError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "audit"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("fixture,node,status,rc", [
    ("summary-healthy.json", "honey", HEALTHY, 0),
    ("summary-warning-bumble.json", "bumble", WARNING, 0),
    ("summary-critical.json", "bumble", CRITICAL, 1),
    ("summary-no-containerfs.json", "sting", HEALTHY, 0),
])
def test_fixture_classification_and_exit_code(capsys: pytest.CaptureFixture[str], fixture: str, node: str,
                                              status: str, rc: int) -> None:
    code, out, err = run(capsys, "audit", "imagefs", "--node", node, "--stats-file", str(FIXTURES / fixture),
                         "--json")
    assert code == rc, err
    report = json.loads(out)
    assert report["node"] == node and report["status"] == status
    assert [f["name"] for f in report["filesystems"]] == ["rootfs", "imagefs", "containerfs"]


def test_bumble_2026_04_29_is_warning_at_16_3_percent(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "imagefs", "--node", "bumble", "--stats-file",
                       str(FIXTURES / "summary-warning-bumble.json"), "--json")
    fss = json.loads(out)["filesystems"]
    for f in fss:
        assert f["available_percent"] == pytest.approx(16.31, abs=0.01)
        assert f["available_bytes"] / 2**30 == pytest.approx(11.4, abs=0.01)
        assert f["capacity_bytes"] / 2**30 == pytest.approx(69.9, abs=0.01)
        assert f["status"] == WARNING
    assert {f["name"]: f["eviction_percent"] for f in fss} == {"rootfs": 10, "imagefs": 15, "containerfs": 15}
    assert code == 0


def test_fail_on_warning_turns_the_warning_into_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "imagefs", "--node", "bumble", "--fail-on", "warning", "--stats-file",
                       str(FIXTURES / "summary-warning-bumble.json"))
    assert code == 1 and out.startswith("node bumble: warning")


def test_critical_names_the_filesystem_under_its_eviction_threshold(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "audit", "imagefs", "--node", "bumble", "--stats-file",
                    str(FIXTURES / "summary-critical.json"), "--json")
    status = {f["name"]: f["status"] for f in json.loads(out)["filesystems"]}
    # rootfs at 11.4 % is above nodefs' 10 % but inside the warning margin;
    # imagefs at 13.6 % is below imagefs' 15 %.
    assert status == {"rootfs": WARNING, "imagefs": CRITICAL, "containerfs": CRITICAL}


def test_missing_containerfs_shares_imagefs_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "audit", "imagefs", "--node", "sting", "--stats-file",
                    str(FIXTURES / "summary-no-containerfs.json"), "--json")
    report = json.loads(out)
    cfs = report["filesystems"][2]
    assert cfs["source"] == "node.runtime.imageFs"
    assert any("containerFs" in n for n in report["notes"])


@pytest.mark.parametrize("fixture,needle,code", [
    ("summary-malformed-no-fs.json", "node.fs is missing", 12),
    ("summary-malformed-bytes.json", "imageFs.availableBytes must be a non-negative number", 12),
    ("summary-truncated.json", "not JSON", 12),
    ("does-not-exist.json", "does not exist", 7),
])
def test_malformed_or_missing_stats_give_one_clear_line(capsys: pytest.CaptureFixture[str], fixture: str,
                                                        needle: str, code: int) -> None:
    rc, out, err = run(capsys, "audit", "imagefs", "--node", "bumble", "--stats-file", str(FIXTURES / fixture))
    assert rc == code
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flywheel-runtime: ") and needle in lines[0]


def test_summary_for_another_node_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "audit", "imagefs", "--node", "bumble", "--stats-file",
                     str(FIXTURES / "summary-healthy.json"))
    assert rc == 12 and "'honey', not 'bumble'" in err


def test_thresholds_are_options(capsys: pytest.CaptureFixture[str]) -> None:
    # With a 17 % imagefs threshold bumble's 16.3 % becomes critical.
    rc, out, _ = run(capsys, "audit", "imagefs", "--node", "bumble", "--imagefs-threshold", "17",
                     "--stats-file", str(FIXTURES / "summary-warning-bumble.json"), "--json")
    assert rc == 1 and json.loads(out)["status"] == CRITICAL


def test_classify_boundaries() -> None:
    # Eviction fires below the threshold ("available<15%"): exactly 15 % is not critical.
    assert classify(14.99, 15, 20) == CRITICAL
    assert classify(15.0, 15, 20) == WARNING
    assert classify(19.99, 15, 20) == WARNING
    assert classify(20.0, 15, 20) == HEALTHY


@pytest.mark.parametrize("bad", [None, [], {"node": []}, {"node": {"fs": {"availableBytes": 5, "capacityBytes": 0}}},
                                 {"node": {"fs": {"availableBytes": 9, "capacityBytes": 5}}},
                                 {"node": {"fs": {"availableBytes": True, "capacityBytes": 5}}},
                                 {"node": {"fs": {"availableBytes": 1, "capacityBytes": 5}, "runtime": "x"}}])
def test_malformed_structures_raise_cluster_error(bad: object) -> None:
    with pytest.raises(ClusterError, match="malformed stats summary"):
        audit_summary(bad, Thresholds())


def test_node_conditions_sit_beside_the_figures() -> None:
    from flywheel_runtime.audit import imagefs

    node = {"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"},
                                      {"type": "MemoryPressure", "status": "False"}]}}
    assert imagefs.node_conditions(node) == {"Ready": "True", "DiskPressure": "False"}
    assert imagefs.node_conditions({}) == {"Ready": "Unknown", "DiskPressure": "Unknown"}
    base = imagefs.NodeReport("bumble", imagefs.WARNING)
    r = imagefs.with_conditions(base, imagefs.node_conditions(node))
    assert (r.status, r.conditions, r.notes) == ("warning", {"Ready": "True", "DiskPressure": "False"}, [])
    assert imagefs.render_text(r).splitlines()[0] == "node bumble: warning (Ready=True, DiskPressure=False)"
    assert r.to_dict()["conditions"] == {"Ready": "True", "DiskPressure": "False"}


def test_disk_pressure_is_critical_whatever_the_figures() -> None:
    from flywheel_runtime.audit import imagefs

    r = imagefs.with_conditions(imagefs.NodeReport("bumble", imagefs.HEALTHY),
                                {"Ready": "False", "DiskPressure": "True"})
    assert r.status == imagefs.CRITICAL
    assert r.notes == ["the kubelet reports DiskPressure=True: it is evicting pods now",
                       "the node is not Ready (Ready=False)"]

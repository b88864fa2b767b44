"""The rendered platform scored by kube-score: every finding is either fixed or
listed in the README ("kube-score findings", with the design's reason)."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flywheel_runtime.topology import load, render

from . import kube_score

README = Path(__file__).parents[3] / "README.md"


@pytest.fixture(scope="module")
def binary() -> Path:
    if kube_score.cached() is None and shutil.which("go") is None:
        pytest.fail("kube-score is not built and Go is missing: install Go (./dev setup installs it)")
    return kube_score.ensure()


def manifests(topo: Any) -> list[dict[str, Any]]:
    """Everything `topology render all` prints, each runner pod named after its
    scale set (kube-score keys objects by name; generateName would merge them)."""
    pods = []
    for ss in topo.scale_sets:
        pod = copy.deepcopy(render.pod(topo, ss.name))
        pod["metadata"].pop("generateName")
        pod["metadata"]["name"] = ss.name
        pods.append(pod)
    return [*render.cluster_objects(topo), *render.autoscaling_runner_sets(topo), *pods]


def findings(binary: Path, docs: list[dict[str, Any]], tmp_path: Path) -> set[tuple[str, str]]:
    """(check id, "Kind/namespace/name (container)") for every failed, unskipped check."""
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    out = subprocess.run([str(binary), "score", "-o", "json", "--kubernetes-version", "v1.36", str(path)],
                         capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr  # 1: some check failed
    got = set()
    for obj in json.loads(out.stdout):
        meta = obj["object_meta"]
        where = f"{obj['type_meta']['kind']}/{meta.get('namespace', '')}/{meta['name']}"
        for c in obj["checks"]:
            if c["skipped"] or c["grade"] >= 10:
                continue
            for comment in c["comments"] or [{"path": ""}]:
                got.add((c["check"]["id"], where + (f" ({comment['path']})" if comment["path"] else "")))
    return got


def dispositions(text: str) -> list[tuple[str, list[str], str]]:
    """The README's table under "kube-score findings": (check, where patterns, why)."""
    section = text.split("### kube-score findings", 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        rows.append((cells[0].strip("`"), re.findall(r"`([^`]+)`", cells[1]), cells[2]))
    return rows


def unexplained(found: set[tuple[str, str]], rows: list[tuple[str, list[str], str]]) -> list[tuple[str, str]]:
    return sorted((check, where) for check, where in found
                  if not any(check == c and any(fnmatch.fnmatchcase(where, p) for p in pats) for c, pats, _ in rows))


def test_every_finding_is_fixed_or_the_designs_choice(binary: Path, tmp_path: Path) -> None:
    found = findings(binary, manifests(load()), tmp_path)
    rows = dispositions(README.read_text())
    assert rows and all(why for _, _, why in rows)
    missing = unexplained(found, rows)
    assert not missing, "kube-score findings the README does not explain:\n" + "\n".join(
        f"  {c}: {w}" for c, w in missing)
    # ... and the README explains no finding that is gone
    stale = [(c, p) for c, pats, _ in rows for p in pats
             if not any(check == c and fnmatch.fnmatchcase(where, p) for check, where in found)]
    assert not stale, f"README dispositions that match no finding any more: {stale}"


def test_an_unexplained_finding_fails(binary: Path, tmp_path: Path) -> None:
    """What the test is for: a regression (a container without resources, a pod
    without its NetworkPolicy) is a finding no README row covers."""
    topo = load()
    docs = manifests(topo)
    cj = next(d for d in docs if d["kind"] == "CronJob")
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].pop("resources")
    docs = [d for d in docs if not (d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == "gitlab-runners")]
    missing = unexplained(findings(binary, docs, tmp_path), dispositions(README.read_text()))
    assert ("container-resources", f"CronJob/arc-runners/{cj['metadata']['name']} ({cj['metadata']['name']})") in missing
    assert any(c == "pod-networkpolicy" and w.startswith("Deployment/gitlab-runners/") for c, w in missing)

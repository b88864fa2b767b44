"""``cluster up --backend kind`` loads every runner image the topology names:
a rendered lane pod applied by hand, as it is, starts its containers (no
ImagePullBackOff: nothing can be pulled here).  The test loads nothing itself."""

from __future__ import annotations

from typing import Any

import pytest

from flywheel_runtime.topology import load

pytestmark = [pytest.mark.e2e,
              pytest.mark.backend("kind", reason="the sim has no kubelets: images run only on kind")]

TOPO = load()
PULL_ERRORS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")


def _node_images(c: Any, node: str) -> set[str]:
    """The references containerd holds on ``node`` (crictl, as the kubelet sees them): its kind
    container is the one on the node's InternalIP."""
    import json
    import os
    import subprocess

    from flywheel_runtime import toolchain
    from flywheel_runtime.harness.kind import engine

    root = engine.engine_root(toolchain.cache_root())
    env = {**os.environ, "DOCKER_HOST": f"unix://{root / 'docker.sock'}"} if (root / "engine.json").exists() \
        else dict(os.environ)
    ip = next(a.address for a in c.kube.core.read_node(node).status.addresses if a.type == "InternalIP")
    names = subprocess.run(["docker", "ps", "--filter", f"label=io.x-k8s.kind.cluster={c._impl.name}",
                            "--format", "{{.Names}}"], capture_output=True, text=True, env=env, check=True).stdout.split()
    for name in names:
        addr = subprocess.run(["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                               name], capture_output=True, text=True, env=env, check=True).stdout.strip()
        if addr == ip:
            out = subprocess.run(["docker", "exec", name, "crictl", "images", "-o", "json"], capture_output=True,
                                 text=True, env=env, check=True).stdout
            return {t for img in json.loads(out)["images"] for t in img.get("repoTags") or []}
    raise AssertionError(f"no kind node container at {node}'s address {ip}")


def test_every_runner_image_is_in_every_schedulable_node(flywheel_cluster: Any) -> None:
    from flywheel_runtime.harness.kind import runner_images

    if flywheel_cluster.backend != "kind":
        pytest.skip("kind only")
    wanted = {*runner_images.runner_targets(TOPO).values(), TOPO.images[runner_images.DAEMON_KEY]}
    for node in TOPO.nodes:
        if not node.schedulable:
            continue
        have = _node_images(flywheel_cluster, node.name)
        assert wanted <= have, f"{node.name} lacks {sorted(wanted - have)}"


@pytest.mark.parametrize("lane", [ss.name for ss in TOPO.scale_sets])
def test_a_rendered_lane_pod_applied_by_hand_starts(flywheel_cluster: Any, lane: str) -> None:
    from flywheel_runtime.harness.placement import lane_pod
    from flywheel_runtime.kube import wait_for

    c = flywheel_cluster
    with c.namespace("imgload") as test_ns:
        # a device lane's pod runs in its own namespace under its account (the device admission policy)
        ns, body = lane_pod(c.topology, lane, test_ns)
        name = c.kube.create_pod(c.fit(body), namespace=ns)

        def started() -> Any:
            p = c.kube.core.read_namespaced_pod(name, ns)
            statuses = [*(p.status.init_container_statuses or []), *(p.status.container_statuses or [])]
            waiting = [s.state.waiting.reason for s in statuses if s.state and s.state.waiting]
            assert not set(waiting) & set(PULL_ERRORS), f"{lane}: {waiting}"
            # Started: some container ran (the runner's own run.sh is absent offline; it may exit at once).
            return any(s.state and (s.state.running or s.state.terminated) for s in statuses) and p

        try:
            p = wait_for(started, 180, f"{lane}'s pod to start a container", interval=0.5)
            assert p.spec.node_name == TOPO.scale_set(lane).node
        finally:
            if ns != test_ns:  # the lane's namespace outlives the test's
                c.kube.delete_pod(ns, name)

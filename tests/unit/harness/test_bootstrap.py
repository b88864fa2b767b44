"""bootstrap.py: what cluster up applies on every backend, from the rendered posture."""

from __future__ import annotations

from flywheel_runtime.harness.bootstrap import gitlab_service_accounts, lane_service_accounts, posture_objects
from flywheel_runtime.harness.placement import lane_pod
from flywheel_runtime.topology import devices, load, render


def test_posture_objects_are_the_rendered_posture() -> None:
    topo = load()
    objs = posture_objects(topo)
    kinds = [o["kind"] for o in objs]
    names = {o["metadata"]["name"] for o in objs if o["kind"] == "ValidatingAdmissionPolicy"}
    assert names == {"flywheel-device-classes", "flywheel-warm-pool-min-runners"}
    assert kinds.count("NetworkPolicy") == len(render.network_policies(topo)) > 0
    for o in render.operator_rbac(topo):
        assert o in objs
    assert gitlab_service_accounts(topo)[0] in objs
    # nothing that runs pods: the CronJobs and GitLab Deployments stay out
    assert not {"CronJob", "Deployment", "HorizontalPodAutoscaler"} & set(kinds)
    # every policy comes before what it guards is ever created
    assert kinds.index("ValidatingAdmissionPolicyBinding") < kinds.index("ServiceAccount")


def test_lane_accounts_are_the_charts_without_its_finalizer() -> None:
    topo = load()
    sas = lane_service_accounts(topo)
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in sas] == [
        (ss.namespace, f"{ss.name}-gha-rs-no-permission") for ss in topo.scale_sets]
    for sa, ss in zip(sas, topo.scale_sets):
        assert "finalizers" not in sa["metadata"]  # no controller here to remove cleanup-protection
        assert sa["metadata"]["labels"]["actions.github.com/scale-set-name"] == ss.name
        assert "app.kubernetes.io/component" not in sa["metadata"]["labels"]  # the chart drops it too
        # Helm's ownership marks: `helm upgrade --install <set>` adopts the account
        assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert sa["metadata"]["annotations"] == {"meta.helm.sh/release-name": ss.name,
                                                 "meta.helm.sh/release-namespace": ss.namespace}


def test_gitlab_account_in_another_namespace() -> None:
    topo = load()
    sas = gitlab_service_accounts(topo, "e2e-x")
    deployments = [o for o in render.gitlab_deployments(topo) if o["kind"] == "Deployment"]
    # every runner manager's own account (its Kubernetes executor calls the API with it), moved
    assert sorted(sa["metadata"]["name"] for sa in sas) == sorted(
        d["spec"]["template"]["spec"]["serviceAccountName"] for d in deployments)
    assert {sa["metadata"]["namespace"] for sa in sas} == {"e2e-x"}
    # in gitlab-runners each carries Helm's marks for its release: the chart's install adopts it
    releases = {render.gitlab_release(g) for g in topo.gitlab_runners}
    for sa in gitlab_service_accounts(topo):
        assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert sa["metadata"]["annotations"]["meta.helm.sh/release-name"] == sa["metadata"]["name"]
        assert sa["metadata"]["name"] in releases


def test_device_lane_pods_go_to_their_lane_under_its_account() -> None:
    topo = load()
    for ss in topo.scale_sets:
        ns, body = lane_pod(topo, ss.name, "flywheel-placement")
        if devices.of_scale_set(ss) is None:
            assert ns == "flywheel-placement" and body == render.pod(topo, ss.name)
        else:
            assert ns == ss.namespace == body["metadata"]["namespace"]
            assert body["spec"]["serviceAccountName"] == render.no_permission_service_account(ss)
            # what the device admission policy admits: this namespace, account and label
            lanes = render.device_lanes(topo)[body["spec"]["runtimeClassName"]]
            assert {"namespace": ns, "serviceAccount": body["spec"]["serviceAccountName"],
                    "scaleSet": body["metadata"]["labels"][render.LABEL_SCALE_SET]} in lanes

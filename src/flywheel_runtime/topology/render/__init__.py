"""Renderers: the topology model turned into what ARC, kind and the test
cluster consume.  Each function takes the model alone and returns plain
dicts in Kubernetes' JSON shape (YAML-ready).

One private module per target, one public namespace (``render.pod``,
``render.helm_values``, ...):

* :mod:`._pods`: runner pods (the template ARC turns into pods), the chart's
  dind layout, and what ARC itself adds;
* :mod:`._arc`: the scale-set and controller charts' values, listener and
  controller pods, the AutoscalingRunnerSets the chart creates;
* :mod:`._nodes`: simulated Node objects and the kind config;
* :mod:`._gitlab`: the gitlab-runner chart's values and their placement view;
* :mod:`._cluster`: namespaces, classes, RBAC, CronJobs;
* :mod:`._posture`: admission policies (device classes, warm pool) and NetworkPolicies;
* :mod:`._common`: label keys, paths, resources and placement they share.
"""

from __future__ import annotations

from flywheel_runtime.topology.render._arc import (
    autoscaling_runner_set,
    autoscaling_runner_sets,
    controller_pod,
    controller_values,
    helm_values,
    listener_pod,
    listener_template,
)
from flywheel_runtime.topology.render._cluster import (
    cleanup_cronjob,
    cleanup_namespaces,
    cluster_objects,
    gitlab_deployments,
    namespaces,
    operator_rbac,
    priority_classes,
    storage_classes,
    warm_pool_cronjobs,
    warm_pool_job_name,
)
from flywheel_runtime.topology.render._common import (
    ARC_GROUP,
    ARC_SCALE_SET_LABEL,
    ARS_PLURAL,
    DEFAULT_WORK_OWNER,
    DOCKER_SOCK_DIR,
    EXTERNALS_COPY,
    EXTERNALS_DIR,
    GITHUB_CONFIG_URL_PLACEHOLDER,
    LABEL_GITLAB_RUNNER,
    LABEL_OVERLAY,
    LABEL_RUNNER_CLASS,
    LABEL_SCALE_SET,
    LABEL_UTILITY_JOB,
    SEED_MOUNT,
    WORK_DIR,
    chart_labels,
    container_resources,
    no_permission_service_account,
    pod_labels,
    yaml_dump,
)
from flywheel_runtime.topology.render._gitlab import (
    EXECUTOR_RULES,
    GITLAB_URL_PLACEHOLDER,
    gitlab_hpa,
    gitlab_release,
    gitlab_values,
    runner_config,
)
from flywheel_runtime.topology.render._posture import (
    cel,
    device_admission,
    device_lanes,
    network_policies,
    outside_blocks,
    warm_pool_admission,
)
from flywheel_runtime.topology.render._nodes import KUBEADM_API, kind_config, node_objects
from flywheel_runtime.topology.render._pods import (
    ARC_RUNNER_ENV,
    arc_additions,
    arc_additions_comment,
    arc_created_pod,
    hardened,
    pod,
    pod_spec,
)

__all__ = [
    "ARC_GROUP", "ARC_RUNNER_ENV", "ARC_SCALE_SET_LABEL", "ARS_PLURAL", "DEFAULT_WORK_OWNER", "DOCKER_SOCK_DIR",
    "EXECUTOR_RULES", "EXTERNALS_COPY", "EXTERNALS_DIR", "GITHUB_CONFIG_URL_PLACEHOLDER", "GITLAB_URL_PLACEHOLDER", "KUBEADM_API",
    "LABEL_GITLAB_RUNNER", "LABEL_OVERLAY", "LABEL_RUNNER_CLASS", "LABEL_SCALE_SET", "LABEL_UTILITY_JOB",
    "SEED_MOUNT", "WORK_DIR",
    "arc_additions", "arc_additions_comment", "arc_created_pod", "autoscaling_runner_set", "autoscaling_runner_sets",
    "cel", "chart_labels", "cleanup_cronjob", "cleanup_namespaces", "cluster_objects", "container_resources",
    "controller_pod", "controller_values", "device_admission", "device_lanes", "gitlab_deployments", "gitlab_hpa",
    "gitlab_release", "gitlab_values", "hardened",
    "helm_values", "kind_config", "listener_pod", "listener_template", "namespaces", "network_policies",
    "no_permission_service_account", "node_objects", "operator_rbac", "outside_blocks", "pod", "pod_labels",
    "pod_spec", "priority_classes", "runner_config", "storage_classes", "warm_pool_admission", "warm_pool_cronjobs",
    "warm_pool_job_name", "yaml_dump",
]

"""The audits' name for the one client layer (:mod:`flywheel_runtime.kube`).

``connect()`` resolves ``--kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config``
/ the in-cluster service account and proves the server answers; every failure
a user can act on is one :class:`~flywheel_runtime.errors.KubeconfigError`
line (exit 4).  ``Cluster`` is the :class:`flywheel_runtime.kube.Client`.
"""

from __future__ import annotations

from flywheel_runtime.kube import (
    ARC_GROUP,
    ARC_VERSION,
    IN_CLUSTER,
    REQUEST_TIMEOUT_S,
    api_errors,
    connect,
    in_cluster,
    kubeconfig_path,
)
from flywheel_runtime.kube._client import ARC_PLURALS
from flywheel_runtime.kube._client import Client as Cluster
from flywheel_runtime.kube._config import SERVICE_ACCOUNT_TOKEN

__all__ = ["ARC_GROUP", "ARC_PLURALS", "ARC_VERSION", "IN_CLUSTER", "REQUEST_TIMEOUT_S", "SERVICE_ACCOUNT_TOKEN",
           "Cluster", "api_errors", "connect", "in_cluster", "kubeconfig_path"]

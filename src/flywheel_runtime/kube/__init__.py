"""One Kubernetes client layer for the harness, the audits, the provisioner
and the warm pool (kr8s is the model: a small public API over private modules).

* :func:`connect` -- a :class:`Client` from ``--kubeconfig``, ``$KUBECONFIG``,
  ``~/.kube/config`` or the in-cluster service account, proven to answer;
* :class:`Client` -- typed API handles (``core``, ``apps``, ``batch``,
  ``custom``, ``ext``, ``dynamic``), ``apply`` / ``server_side_apply`` /
  ``create``, ARC's custom resources (``list_arc``, ``get_arc``,
  ``patch_arc``, ``apply_arc``, ``delete_arc``), namespaces, pods and the
  scheduler's verdict (:class:`PodVerdict`);
* :func:`wait_for` and :class:`api_errors` -- bounded polling, and one error
  line a user can act on (exit 4 unreachable, 12 API failure).

``kubernetes`` is imported only when a client is made: importing this package
costs nothing on the runtime path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from flywheel_runtime.kube._config import IN_CLUSTER, REQUEST_TIMEOUT_S, in_cluster, kubeconfig_path
from flywheel_runtime.kube._errors import api_errors
from flywheel_runtime.kube._wait import wait_for

if TYPE_CHECKING:
    from flywheel_runtime.kube._client import Client, PodVerdict

ARC_GROUP = "actions.github.com"
ARC_VERSION = "v1alpha1"
# The label ARC puts on a scale set's listeners, EphemeralRunners and runner pods.
ARC_SCALE_SET_LABEL = "actions.github.com/scale-set-name"
START_DELAY_ANNOTATION = "flywheel.tinyland.dev/start-delay"
JOB_RESULT_ANNOTATION = "flywheel.tinyland.dev/job-result"

__all__ = ["ARC_GROUP", "ARC_SCALE_SET_LABEL", "ARC_VERSION", "IN_CLUSTER", "JOB_RESULT_ANNOTATION",
           "REQUEST_TIMEOUT_S", "START_DELAY_ANNOTATION", "Client", "PodVerdict", "api_errors", "connect",
           "in_cluster", "kubeconfig_path", "wait_for"]


def connect(kubeconfig: str | os.PathLike[str] | None = None, *, check: bool = True) -> Client:
    """Resolve and load the kubeconfig; with ``check``, prove the server answers
    (GET /version) and fail fast on a dead endpoint (no urllib3 retries).  Without
    it (the harness, on a cluster it waits for itself), the client keeps urllib3's
    retries over a control plane that may still be settling."""
    from flywheel_runtime.kube._client import Client
    from flywheel_runtime.kube._config import load_api_client

    path = kubeconfig_path(kubeconfig)
    api_client = load_api_client(path)
    if check:
        api_client.configuration.retries = 0
    client = Client(api_client, path)
    if check:
        from kubernetes import client as k8s

        with api_errors(client, "checking the API server"):
            k8s.VersionApi(api_client).get_code(_request_timeout=REQUEST_TIMEOUT_S)
    return client


def __getattr__(name: str) -> object:
    if name in ("Client", "PodVerdict"):
        from flywheel_runtime.kube import _client

        return getattr(_client, name)
    raise AttributeError(f"module 'flywheel_runtime.kube' has no attribute {name!r}")

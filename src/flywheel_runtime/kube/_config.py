"""Finding a kubeconfig (or the in-cluster service account) and loading it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import KubeconfigError

# A short connect timeout: an unreachable cluster must fail in seconds, not minutes.
REQUEST_TIMEOUT_S = 10.0
# Marker path: the CronJobs (warm pool, cleanup) run in a pod with a service account.
IN_CLUSTER = Path("<in-cluster>")
SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SERVICE_ACCOUNT_TOKEN.is_file()


def kubeconfig_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--kubeconfig, else the first file in $KUBECONFIG, else ~/.kube/config, else in-cluster."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise KubeconfigError(f"no kubeconfig at {path} (given with --kubeconfig)")
        return path
    env = os.environ.get("KUBECONFIG")
    if env:
        for part in env.split(os.pathsep):
            if part and Path(part).is_file():
                return Path(part)
        raise KubeconfigError(f"no kubeconfig file found in $KUBECONFIG={env}")
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return default
    if in_cluster():
        return IN_CLUSTER
    raise KubeconfigError("no kubeconfig: pass --kubeconfig, set $KUBECONFIG, or create ~/.kube/config")


def load_api_client(path: Path) -> Any:
    """A ``kubernetes`` ApiClient for ``path`` (or the in-cluster account); one error line when unusable."""
    try:
        from kubernetes import client, config
    except ImportError as exc:  # the k8s extra is not installed
        raise KubeconfigError("the Kubernetes client is not installed: pip install 'flywheel-runtime[k8s]'") from exc
    try:
        if path == IN_CLUSTER:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        return config.new_client_from_config(str(path))
    except Exception as exc:  # ConfigException, YAML errors, missing keys: all mean a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KubeconfigError(f"kubeconfig {path} is unusable: {first}") from exc

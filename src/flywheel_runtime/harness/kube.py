"""The harness's name for the one client layer (:mod:`flywheel_runtime.kube`).

``Kube(kubeconfig)`` is a :class:`flywheel_runtime.kube.Client` over a test
cluster's own kubeconfig; everything else is re-exported as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flywheel_runtime.kube import JOB_RESULT_ANNOTATION, START_DELAY_ANNOTATION, wait_for
from flywheel_runtime.kube._client import Client, PodVerdict

__all__ = ["JOB_RESULT_ANNOTATION", "START_DELAY_ANNOTATION", "Kube", "PodVerdict", "wait_for"]


class Kube(Client):
    """A client for a test cluster's kubeconfig (unchecked: the harness waits itself)."""

    def __init__(self, kubeconfig: str | Path, api_client: Any = None) -> None:
        from flywheel_runtime.errors import KubeconfigError
        from flywheel_runtime.kube._config import load_api_client

        path = Path(kubeconfig)
        if api_client is None:
            if not path.is_file():
                raise KubeconfigError(f"no kubeconfig at {path}; run `flywheel-runtime cluster up` first")
            api_client = load_api_client(path)
        super().__init__(api_client, path)

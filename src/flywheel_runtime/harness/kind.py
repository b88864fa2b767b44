"""The ``kind`` backend: a kind cluster from the topology's kind config.

Used where Docker and kind exist.  Node names, labels, taints and max-pods come
from :func:`flywheel_runtime.topology.render.kind_config`; the real kubelets
report real allocatable, so only placement structure (not the audit figures)
carries over.  pytest-kind's ``KindCluster`` drives the kind CLI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel_runtime.errors import ClusterError
from flywheel_runtime.harness import build


def available() -> bool:
    """Docker answers and kind is installed."""
    if shutil.which("kind") is None or shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class KindBackend:
    name: str = "flywheel"
    root: Path | None = None

    @property
    def state_dir(self) -> Path:
        return (self.root or build.cache_root()) / "clusters" / f"kind-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def config_path(self) -> Path:
        import yaml

        from flywheel_runtime.topology import load, render

        self.state_dir.mkdir(parents=True, exist_ok=True)
        cfg = render.kind_config(load())
        cfg["name"] = self.name
        path = self.state_dir / "kind-config.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def _cluster(self) -> Any:
        try:
            from pytest_kind import KindCluster
        except ImportError as exc:
            raise ClusterError("the kind backend needs pytest-kind: pip install 'flywheel-runtime[kind]'") from exc
        return KindCluster(self.name, kubeconfig=self.kubeconfig)

    def up(self, *, log: Any = None) -> Path:
        if not available():
            raise ClusterError("the kind backend needs a running Docker engine and the kind CLI on PATH")
        say = log or (lambda msg: print(f"cluster: {msg}", file=sys.stderr, flush=True))
        cluster = self._cluster()
        say(f"creating kind cluster {self.name!r} from the topology's kind config")
        cluster.create(config_file=self.config_path())
        from flywheel_runtime.harness.kube import Kube
        from flywheel_runtime.topology import load, render

        kube = Kube(self.kubeconfig)
        topo = load()
        for obj in [*render.namespaces(topo), *render.priority_classes(topo), *render.storage_classes(topo)]:
            kube.apply(obj)
        return self.kubeconfig

    def down(self, *, quiet: bool = False) -> bool:
        if not available():
            return False
        self._cluster().delete()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return True

    def status(self) -> dict[str, Any]:
        running = self.kubeconfig.exists() and available()
        return {"backend": "kind", "name": self.name, "running": running, "kubeconfig": str(self.kubeconfig)}


def main() -> None:  # pragma: no cover - regenerates kind/cluster.yaml
    import yaml

    from flywheel_runtime.topology import load, render

    cfg = {**render.kind_config(load()), "name": "flywheel"}
    sys.stdout.write("# Rendered from the topology by `python -m flywheel_runtime.harness.kind`; do not edit.\n")
    sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False))


if __name__ == "__main__":  # pragma: no cover
    main()

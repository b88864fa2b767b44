"""``python -m flywheel_runtime.harness.kind > kind/cluster.yaml``: the shipped kind config, rendered."""

from __future__ import annotations

import sys

import yaml

from flywheel_runtime.harness.kind import cluster_config
from flywheel_runtime.topology import load


def main() -> None:  # pragma: no cover - regenerates kind/cluster.yaml
    cfg = cluster_config(load(), "flywheel", kvm=True, restrict_oom=False)
    sys.stdout.write("# Rendered from the topology by `python -m flywheel_runtime.harness.kind`; do not edit.\n")
    sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False))


if __name__ == "__main__":  # pragma: no cover
    main()

"""``flywheel-runtime cluster up|down|status|placement`` (argparse only)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flywheel_runtime.harness import Backend


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("cluster", help="the three-node test cluster (sim or kind)")
    csub = p.add_subparsers(dest="cluster_command", metavar="SUBCOMMAND")
    csub.required = True
    for name, fn, help_ in (
        ("up", _up, "bring the cluster up (reuse a running one); prints the kubeconfig path"),
        ("down", _down, "stop every process; leave no process or port behind"),
        ("status", _status, "running or stopped, per component"),
        ("placement", _placement, "create one pod per scale set as rendered and show where each lands"),
    ):
        c = csub.add_parser(name, help=help_)
        c.add_argument("--backend", choices=("sim", "kind"), default=None,
                       help="default: kind where Docker and kind work, else sim")
        c.add_argument("--name", default="flywheel", help="cluster name (default: flywheel)")
        if name in ("up", "placement"):
            c.add_argument("--topology", metavar="FILE", default=None,
                           help="topology file (default: $FLYWHEEL_TOPOLOGY or the shipped topology.yaml)")
        if name == "up":
            c.add_argument("--arc-crds", metavar="DIR", default=None,
                           help="ARC's CRD directory (default: $FLYWHEEL_ARC_CRDS, else "
                                "../shared/arc/gha-runner-scale-set-0.14.0/crds beside the repository)")
            c.add_argument("--arc", action="store_true",
                           help="kind only: run ARC too: the Actions service double in the cluster, the real "
                                "controller and every scale set's chart (helm), the rendered CronJobs")
            c.add_argument("--arc-controller-image", metavar="REF|ARCHIVE", default=None,
                           help="the ARC 0.14.0 controller image for --arc: an image in the harness's Docker engine "
                                "or a docker archive (default: $FLYWHEEL_ARC_CONTROLLER_IMAGE)")
        if name in ("status", "placement"):
            c.add_argument("--json", action="store_true")
        c.set_defaults(handler=fn)


def _backend(args: argparse.Namespace) -> Backend:
    from flywheel_runtime.harness import get_backend

    return get_backend(args.backend, args.name, getattr(args, "arc_crds", None))


def _up(args: argparse.Namespace) -> int:
    from flywheel_runtime.errors import ExitCode
    from flywheel_runtime.topology import load

    topo = load(args.topology)  # resolved once, here: the backends never read $FLYWHEEL_TOPOLOGY
    backend = _backend(args)
    if not args.arc:
        print(backend.up(topo))
        return 0
    from flywheel_runtime.errors import FlywheelError
    from flywheel_runtime.harness.kind import KindBackend
    from flywheel_runtime.harness.kind import arc

    if not isinstance(backend, KindBackend):
        raise FlywheelError("--arc needs the kind backend (the sim has no kubelets to run ARC's pods)",
                            exit_code=ExitCode.USAGE)
    # Both fail here, before any node starts.
    image = arc.controller_image_spec(args.arc_controller_image)
    arc.charts()
    print(backend.up(topo, arc_controller_image=image))
    return 0


def _down(args: argparse.Namespace) -> int:
    _backend(args).down()
    return 0


def _status(args: argparse.Namespace) -> int:
    st = _backend(args).status()
    if args.json:
        print(json.dumps(st.as_dict(), indent=2))
    else:
        print(f"{st.backend} cluster {st.name!r}: {'running' if st.running else 'stopped'}")
        for comp, state in st.components.items():
            print(f"  {comp:<26}{state}")
    return 0 if st.running else 1


def _placement(args: argparse.Namespace) -> int:
    from flywheel_runtime.errors import KubeconfigError
    from flywheel_runtime.harness.placement import as_json, place_all, table
    from flywheel_runtime.kube import connect
    from flywheel_runtime.topology import load

    backend = _backend(args)
    st = backend.status()
    if not st.running:
        raise KubeconfigError(f"{st.backend} cluster {backend.name!r} is not running; "
                              f"run `flywheel-runtime cluster up --name {backend.name}` first")
    # kind's nodes are this machine's size: envelopes are scaled, placement is not.
    if st.backend == "kind":
        import sys

        print("placement: kind nodes have this machine's allocatable; every lane's envelope is scaled by one "
              "factor per resource (selectors, affinity, tolerations and claims as rendered)", file=sys.stderr)
    landings = place_all(connect(backend.kubeconfig, check=False), load(args.topology), scaled=st.backend == "kind")
    print(json.dumps(as_json(landings), indent=2) if args.json else table(landings))
    return 0 if all(ld.ok for ld in landings) else 1

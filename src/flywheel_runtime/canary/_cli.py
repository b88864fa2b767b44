"""``flywheel-runtime canary ...`` (argparse only; the canaries import their stacks lazily)."""

from __future__ import annotations

import argparse

NAMES = ("kvm", "vulkan", "webgpu", "dawn")
GPU_NAMES = ("vulkan", "webgpu", "dawn")


def _common(p: argparse.ArgumentParser, *, gpu: bool, kvm: bool) -> None:
    p.add_argument("--json", action="store_true", help="print the schema-versioned JSON report on stdout")
    p.add_argument("--artifacts", metavar="DIR", help="write the JSON/markdown report and PNG renders here")
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # reproduce a run's inputs when debugging
    if gpu:
        p.add_argument("--require-hardware", action="store_true",
                       help="fail (exit 6) when only a software adapter (llvmpipe/lavapipe/SwiftShader) exists")
    if kvm:
        p.add_argument("--device", default="/dev/kvm", metavar="PATH", help="KVM device (default /dev/kvm)")
        p.add_argument("--qemu", action="store_true",
                       help="also boot qemu-system-x86_64 -accel kvm on the canary's own boot sector")


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("canary", help="prove KVM, Vulkan, WebGPU and Dawn work by running checked workloads",
                       description="Exit codes: 0 pass, 1 a check failed, 6 device/driver absent or software "
                                   "adapter under --require-hardware, 8 permission denied, 10 unsupported stack.")
    csub = p.add_subparsers(dest="canary", metavar="CANARY")
    csub.required = True
    for name in NAMES:
        c = csub.add_parser(name, help=f"the {name} canary")
        _common(c, gpu=name != "kvm", kvm=name == "kvm")
        c.set_defaults(handler=_run, names=[name])
    c = csub.add_parser("gpu", help="run vulkan, webgpu and dawn (the GPU lane's canaries)")
    _common(c, gpu=True, kvm=False)
    c.set_defaults(handler=_run, names=list(GPU_NAMES))
    c = csub.add_parser("all", help="run kvm, vulkan, webgpu and dawn")
    _common(c, gpu=True, kvm=True)
    c.set_defaults(handler=_run, names=list(NAMES))
    j = csub.add_parser("job-manifest", help="print a Kubernetes Job running a canary on its lane")
    j.add_argument("lane", choices=("kvm", "gpu"))
    j.add_argument("--topology", metavar="FILE", help="topology file (default: $FLYWHEEL_TOPOLOGY or the shipped one)")
    j.add_argument("--image", help="runner image (default: the scale set's image)")
    j.set_defaults(handler=_job_manifest)


def _run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from flywheel_runtime.canary.report import to_document
    from flywheel_runtime.canary.runner import Options, outcome, run, summary_line

    opts = Options(artifacts=Path(args.artifacts) if args.artifacts else None,
                   require_hardware=getattr(args, "require_hardware", False),
                   device=getattr(args, "device", "/dev/kvm"), qemu=getattr(args, "qemu", False), seed=args.seed)
    reports = run(args.names, opts, label=args.canary)
    if args.json:
        print(json.dumps(to_document(reports, args.canary), indent=2))
    else:
        for r in reports:
            print(summary_line(r))
    err = outcome(reports)
    if err is not None:
        raise err
    return 0


def _job_manifest(args: argparse.Namespace) -> int:
    import yaml

    from flywheel_runtime.canary.jobs import job_manifest
    from flywheel_runtime.topology import load

    print(yaml.safe_dump(job_manifest(load(args.topology), args.lane, image=args.image), sort_keys=False), end="")
    return 0

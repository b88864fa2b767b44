"""Vulkan, WebGPU (wgpu) and Dawn canaries on the real Mesa lavapipe stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image

from flywheel_runtime.canary import scene

pytestmark = pytest.mark.gpu

SHADERS = Path(__file__).resolve().parents[3] / "src/flywheel_runtime/canary/shaders"
SOFTWARE_LINE = "flywheel-runtime: hardware GPU required but only a software adapter is available: "


def _assert_render_png(path: Path, clear: tuple[int, ...]) -> None:
    img = Image.open(path).convert("RGBA")
    assert img.size == (scene.WIDTH, scene.HEIGHT)
    for _, x, y in scene.PROBES:
        assert img.getpixel((x, y)) == scene.expected_pixel(x, y, clear)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["vulkan", "webgpu", "dawn"])
def test_canary_passes_on_lavapipe_and_says_software(cli, tmp_path: Path, name: str) -> None:
    run = cli("canary", name, "--json", "--artifacts", str(tmp_path), "--seed", "12345")
    assert run.rc == 0, run.stderr
    doc = run.doc
    assert doc["status"] == "passed" and doc["passed"] is True
    assert doc["adapter"]["kind"] == "software"
    assert "llvmpipe" in doc["adapter"]["device"]
    names = [c["name"] for c in doc["checks"]]
    assert "compute element-by-element" in names and "render full image" in names
    assert all(c["passed"] for c in doc["checks"])
    png = tmp_path / f"{name}-render.png"
    assert doc["artifacts"] == [png.name]
    _assert_render_png(png, scene.make_inputs(12345).clear)
    assert (tmp_path / f"canary-{name}.json").is_file()
    md = (tmp_path / f"canary-{name}.md").read_text()
    assert f"]({png.name})" in md and "software" in md


@pytest.mark.parametrize("name", ["vulkan", "webgpu", "dawn"])
def test_require_hardware_fails_on_lavapipe(cli, name: str) -> None:
    run = cli("canary", name, "--require-hardware")
    assert run.rc == 6
    assert len(run.error_lines) == 1 and run.error_lines[0].startswith(SOFTWARE_LINE)
    assert "llvmpipe" in run.error_lines[0]


@pytest.mark.parametrize("name,needle", [
    ("vulkan", "no Vulkan driver: vkCreateInstance found no usable ICD in VK_DRIVER_FILES="),
    ("webgpu", "wgpu found no Vulkan adapter"),
    ("dawn", "Dawn found no WebGPU adapter"),
])
def test_no_vulkan_driver_is_absent(cli, no_vulkan_driver, name: str, needle: str) -> None:
    run = cli("canary", name, "--json", env=no_vulkan_driver)
    assert run.rc == 6, run.stderr
    assert needle in run.error_lines[0]
    assert run.doc["status"] == "absent" and run.doc["passed"] is False and run.doc["checks"] == []


def test_dawn_rejects_mesa_22_lavapipe_as_unsupported(cli, mesa22_icd: Path) -> None:
    env = {"VK_ICD_FILENAMES": str(mesa22_icd), "VK_DRIVER_FILES": str(mesa22_icd)}
    run = cli("canary", "dawn", "--json", env=env)
    assert run.rc == 10
    assert run.error_lines == ["flywheel-runtime: Dawn rejected the adapter: "
                               "Vulkan shaderUniform*ArrayDynamicIndexing required."]
    assert run.doc["status"] == "unsupported"
    # the same driver still passes the Vulkan canary: it is Dawn's requirement, not a broken stack
    assert cli("canary", "vulkan", env=env).rc == 0


def _fake_dawn(tmp_path: Path, script: str, bindings: bool = True) -> Path:
    (tmp_path / "canary.mjs").write_text(script)
    if bindings:
        (tmp_path / "node_modules/webgpu").mkdir(parents=True)
        (tmp_path / "node_modules/webgpu/package.json").write_text("{}")
    return tmp_path


def test_dawn_without_node_modules_fails_with_its_reason(cli, tmp_path: Path) -> None:
    _fake_dawn(tmp_path, "", bindings=False)
    run = cli("canary", "dawn", "--json", env={"FLYWHEEL_DAWN_DIR": str(tmp_path)})
    assert run.rc == 1
    assert run.error_lines == [f"flywheel-runtime: canary dawn: Dawn bindings not installed: run `npm ci` in {tmp_path}"]
    assert run.doc["status"] == "failed"


def test_dawn_without_script_fails(cli, tmp_path: Path) -> None:
    run = cli("canary", "dawn", env={"FLYWHEEL_DAWN_DIR": str(tmp_path)})
    assert run.rc == 1 and "Dawn canary script missing: " in run.error_lines[0]


def test_dawn_without_node_fails(cli, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    run = cli("canary", "dawn", env={"PATH": str(empty)})
    assert run.rc == 1
    assert run.error_lines == ["flywheel-runtime: canary dawn: Dawn canary needs Node.js: `node` is not on PATH"]


def test_dawn_crash_fails_with_node_exit_and_last_line(cli, tmp_path: Path) -> None:
    _fake_dawn(tmp_path, "console.error('Segmentation fault in dawn.node'); process.exit(139);\n")
    run = cli("canary", "dawn", "--json", env={"FLYWHEEL_DAWN_DIR": str(tmp_path)})
    assert run.rc == 1
    assert run.error_lines == ["flywheel-runtime: canary dawn: Dawn canary crashed (node exit 139): "
                               "Segmentation fault in dawn.node"]
    assert run.doc["status"] == "failed"


def test_dawn_timeout_fails_with_the_timeout_code(cli, tmp_path: Path) -> None:
    _fake_dawn(tmp_path, "setTimeout(() => {}, 60000);\n")
    run = cli("canary", "dawn", env={"FLYWHEEL_DAWN_DIR": str(tmp_path), "FLYWHEEL_DAWN_TIMEOUT_S": "1"})
    assert run.rc == 13
    assert run.error_lines == ["flywheel-runtime: canary dawn: Dawn canary did not finish within 1 s"]


def test_main_job_tolerates_only_dawns_own_rejection() -> None:
    from flywheel_runtime.errors import ExitCode
    from flywheel_runtime.mainjob import steps

    dawn = next(s for s in steps(None) if s.argv == ("canary", "dawn"))
    assert dawn.tolerated == frozenset({int(ExitCode.UNSUPPORTED)})
    assert int(ExitCode.FAILED) not in dawn.tolerated and int(ExitCode.TIMEOUT) not in dawn.tolerated


def test_missing_vulkan_extra_is_named(cli, tmp_path: Path) -> None:
    # a Python path where `vulkan` / `wgpu` cannot be imported: the binding is "not installed"
    for mod in ("vulkan", "wgpu"):
        (tmp_path / mod).mkdir()
        (tmp_path / mod / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    env = {"PYTHONPATH": str(tmp_path)}
    run = cli("canary", "vulkan", env=env)
    assert run.rc == 10 and "pip install 'flywheel-runtime[gpu]'" in run.error_lines[0]
    run = cli("canary", "webgpu", env=env)
    assert run.rc == 10 and "wgpu-py is not installed" in run.error_lines[0]


def test_group_gpu_reports_every_canary(cli, tmp_path: Path) -> None:
    run = cli("canary", "gpu", "--json", "--artifacts", str(tmp_path))
    assert run.rc == 0, run.stderr
    assert [c["canary"] for c in run.doc["canaries"]] == ["vulkan", "webgpu", "dawn"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["dawn-render.png", "vulkan-render.png",
                                                                 "webgpu-render.png"]


@pytest.mark.parametrize("src", ["scale.comp", "quad.vert", "quad.frag"])
def test_checked_in_spirv_matches_the_glsl(tmp_path: Path, src: str) -> None:
    out = tmp_path / f"{src}.spv"
    subprocess.run(["glslangValidator", "-V", "--quiet", str(SHADERS / src), "-o", str(out)], check=True)
    assert out.read_bytes() == (SHADERS / f"{src}.spv").read_bytes(), \
        f"{src}.spv is stale: run glslangValidator -V {src} -o {src}.spv"

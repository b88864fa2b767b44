// The GPU canary scene in WGSL (wgpu-py and Dawn).  Keep in step with
// flywheel_runtime/canary/scene.py and the GLSL sources beside this file.

@group(0) @binding(0) var<storage, read_write> data: array<u32>;

@compute @workgroup_size(64)
fn cs_main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&data)) {
        data[i] = (data[i] * 3u + i) ^ 0xA5A5A5A5u;
    }
}

struct VOut {
    @builtin(position) pos: vec4<f32>,
    @location(0) @interpolate(flat) color: vec4<f32>,
};

@vertex
fn vs_main(@builtin(vertex_index) vi: u32) -> VOut {
    // two quads as (x0, y0, x1, y1) in NDC, +y up; six vertices each
    var rects = array<vec4<f32>, 2>(vec4<f32>(-0.75, 0.0, 0.0, 0.75), vec4<f32>(0.25, -0.75, 0.75, -0.25));
    var colors = array<vec4<f32>, 2>(vec4<f32>(1.0, 0.0, 0.0, 1.0), vec4<f32>(0.0, 1.0, 0.0, 1.0));
    var corner_x = array<u32, 6>(0u, 1u, 0u, 0u, 1u, 1u);
    var corner_y = array<u32, 6>(0u, 0u, 1u, 1u, 0u, 1u);
    let q = vi / 6u;
    let c = vi % 6u;
    let r = rects[q];
    var out: VOut;
    out.pos = vec4<f32>(select(r.x, r.z, corner_x[c] == 1u), select(r.y, r.w, corner_y[c] == 1u), 0.0, 1.0);
    out.color = colors[q];
    return out;
}

@fragment
fn fs_main(in: VOut) -> @location(0) vec4<f32> {
    return in.color;
}

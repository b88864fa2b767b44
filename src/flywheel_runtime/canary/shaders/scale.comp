#version 450
// Compute half of the GPU canary (Vulkan): data[i] = (data[i] * 3 + i) ^ 0xA5A5A5A5.
// Keep in step with canary.wgsl and flywheel_runtime/canary/scene.py.
layout(local_size_x = 64) in;
layout(std430, set = 0, binding = 0) buffer Data { uint data[]; };
layout(push_constant) uniform Push { uint n; } pc;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i < pc.n) {
        data[i] = (data[i] * 3u + i) ^ 0xA5A5A5A5u;
    }
}

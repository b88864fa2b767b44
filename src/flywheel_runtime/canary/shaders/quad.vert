#version 450
// Render half of the GPU canary (Vulkan): two flat-coloured quads, six vertices each,
// no vertex buffers.  Rectangles are in NDC with +y up as in canary.wgsl; Vulkan's
// NDC has +y down, so y is negated to produce the same image.
layout(location = 0) flat out vec4 color;

const vec4 rects[2] = vec4[2](vec4(-0.75, 0.0, 0.0, 0.75), vec4(0.25, -0.75, 0.75, -0.25));
const vec4 colors[2] = vec4[2](vec4(1.0, 0.0, 0.0, 1.0), vec4(0.0, 1.0, 0.0, 1.0));
const uint corner_x[6] = uint[6](0u, 1u, 0u, 0u, 1u, 1u);
const uint corner_y[6] = uint[6](0u, 0u, 1u, 1u, 0u, 1u);

void main() {
    uint q = uint(gl_VertexIndex) / 6u;
    uint c = uint(gl_VertexIndex) % 6u;
    vec4 r = rects[q];
    float x = corner_x[c] == 1u ? r.z : r.x;
    float y = corner_y[c] == 1u ? r.w : r.y;
    gl_Position = vec4(x, -y, 0.0, 1.0);
    color = colors[q];
}

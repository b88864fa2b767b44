#version 450
// Fragment stage of the Vulkan canary render: the flat colour of the quad.
layout(location = 0) flat in vec4 color;
layout(location = 0) out vec4 frag;

void main() {
    frag = color;
}

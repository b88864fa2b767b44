"""Vulkan canary (the ``vulkan`` PyPI binding over the system loader).

Picks a physical device by the adapter policy, runs the compute shader
(``shaders/scale.comp.spv``) and checks every element, then renders the quad
scene offscreen (``quad.vert.spv`` / ``quad.frag.spv``), copies the image to a
host-visible buffer and checks the pixels; the render is saved as PNG.  The
binding is imported only inside :func:`canary`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flywheel_runtime.canary import adapter as policy
from flywheel_runtime.canary import scene
from flywheel_runtime.canary.png import write_rgba
from flywheel_runtime.canary.report import Adapter, Report
from flywheel_runtime.errors import DeviceAbsentError, FlywheelError, UnsupportedError

SHADERS = Path(__file__).with_name("shaders")
SPIRV = {"compute": "scale.comp.spv", "vertex": "quad.vert.spv", "fragment": "quad.frag.spv"}
DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}


def _icd_hint() -> str:
    for var in ("VK_DRIVER_FILES", "VK_ICD_FILENAMES"):
        if os.environ.get(var):
            return f"{var}={os.environ[var]}"
    return "the system ICD directories (/usr/share/vulkan/icd.d, /etc/vulkan/icd.d)"


def _import_vulkan() -> Any:
    try:
        import vulkan as vk
    except ImportError as exc:
        raise UnsupportedError(f"the vulkan binding is not installed ({exc}); pip install 'flywheel-runtime[gpu]'") \
            from None
    except OSError:  # the binding dlopens libvulkan.so.1 at import time
        raise DeviceAbsentError("Vulkan loader libvulkan.so.1 not found (apt-get install libvulkan1)") from None
    return vk


class _Vk:
    """One instance + device, with everything created recorded for teardown in reverse."""

    def __init__(self, vk: Any) -> None:
        self.vk = vk
        self._undo: list[Callable[[], None]] = []
        self.instance = self.pd = self.device = self.queue = None
        self.qfamily = 0

    def later(self, fn: Callable[..., None], *args: Any) -> None:
        self._undo.append(lambda: fn(*args))

    def close(self) -> None:
        if self.device is not None:
            try:
                self.vk.vkDeviceWaitIdle(self.device)
            except Exception:
                pass
        while self._undo:
            try:
                self._undo.pop()()
            except Exception:  # teardown must not hide the canary's own result
                pass

    # --- setup -------------------------------------------------------------
    def create_instance(self) -> None:
        vk = self.vk
        app = vk.VkApplicationInfo(sType=vk.VK_STRUCTURE_TYPE_APPLICATION_INFO, pApplicationName="flywheel-canary",
                                   applicationVersion=1, pEngineName="flywheel", engineVersion=1,
                                   apiVersion=vk.VK_MAKE_VERSION(1, 1, 0))
        try:
            self.instance = vk.vkCreateInstance(
                vk.VkInstanceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, pApplicationInfo=app), None)
        except vk.VkErrorIncompatibleDriver:
            raise DeviceAbsentError(f"no Vulkan driver: vkCreateInstance found no usable ICD in {_icd_hint()}") \
                from None
        except vk.VkError as exc:
            raise DeviceAbsentError(f"vkCreateInstance failed: {type(exc).__name__}") from None
        self.later(vk.vkDestroyInstance, self.instance, None)

    def describe(self, pd: Any) -> dict[str, Any]:
        vk = self.vk
        p = vk.vkGetPhysicalDeviceProperties(pd)
        driver = f"driverVersion {p.driverVersion:#x}"
        if p.apiVersion >= vk.VK_MAKE_VERSION(1, 2, 0):
            drv = vk.VkPhysicalDeviceDriverProperties(sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES)
            vk.vkGetPhysicalDeviceProperties2(pd, vk.VkPhysicalDeviceProperties2(
                sType=vk.VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, pNext=drv))
            driver = f"{vk.ffi.string(drv.driverName).decode()} {vk.ffi.string(drv.driverInfo).decode()}".strip()
        name = p.deviceName if isinstance(p.deviceName, str) else vk.ffi.string(p.deviceName).decode()
        t = DEVICE_TYPES.get(p.deviceType, "other")
        api = f"{p.apiVersion >> 22}.{(p.apiVersion >> 12) & 0x3FF}.{p.apiVersion & 0xFFF}"
        return {"vendor": f"{p.vendorID:#06x}", "device": name, "backend": f"vulkan {api}", "type": t,
                "driver": driver, "kind": policy.classify(device=name, driver=driver, type=t, vendor_id=p.vendorID)}

    def create_device(self, pd: Any) -> None:
        vk = self.vk
        self.pd = pd
        want = vk.VK_QUEUE_COMPUTE_BIT | vk.VK_QUEUE_GRAPHICS_BIT
        fams = vk.vkGetPhysicalDeviceQueueFamilyProperties(pd)
        idx = [i for i, f in enumerate(fams) if f.queueFlags & want == want]
        if not idx:
            raise UnsupportedError("the Vulkan device has no queue family with both graphics and compute")
        self.qfamily = idx[0]
        qinfo = vk.VkDeviceQueueCreateInfo(sType=vk.VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                           queueFamilyIndex=self.qfamily, queueCount=1, pQueuePriorities=[1.0])
        self.device = vk.vkCreateDevice(pd, vk.VkDeviceCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, queueCreateInfoCount=1, pQueueCreateInfos=[qinfo]), None)
        self.later(vk.vkDestroyDevice, self.device, None)
        self.queue = vk.vkGetDeviceQueue(self.device, self.qfamily, 0)
        self.mem_props = vk.vkGetPhysicalDeviceMemoryProperties(pd)
        pool = vk.vkCreateCommandPool(self.device, vk.VkCommandPoolCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, queueFamilyIndex=self.qfamily), None)
        self.later(vk.vkDestroyCommandPool, self.device, pool, None)
        self.cmd_pool = pool

    # --- helpers -------------------------------------------------------------
    def memory_type(self, bits: int, flags: int) -> int:
        for i in range(self.mem_props.memoryTypeCount):
            if bits & (1 << i) and self.mem_props.memoryTypes[i].propertyFlags & flags == flags:
                return i
        raise UnsupportedError(f"no Vulkan memory type with flags {flags:#x}")

    def allocate(self, reqs: Any, flags: int) -> Any:
        vk = self.vk
        mem = vk.vkAllocateMemory(self.device, vk.VkMemoryAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, allocationSize=reqs.size,
            memoryTypeIndex=self.memory_type(reqs.memoryTypeBits, flags)), None)
        self.later(vk.vkFreeMemory, self.device, mem, None)
        return mem

    def host_buffer(self, size: int, usage: int) -> tuple[Any, Any]:
        vk = self.vk
        buf = vk.vkCreateBuffer(self.device, vk.VkBufferCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, size=size, usage=usage,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE), None)
        self.later(vk.vkDestroyBuffer, self.device, buf, None)
        mem = self.allocate(vk.vkGetBufferMemoryRequirements(self.device, buf),
                            vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)
        vk.vkBindBufferMemory(self.device, buf, mem, 0)
        return buf, mem

    def write(self, mem: Any, data: bytes) -> None:
        ptr = self.vk.vkMapMemory(self.device, mem, 0, len(data), 0)
        self.vk.ffi.memmove(ptr, data, len(data))
        self.vk.vkUnmapMemory(self.device, mem)

    def read(self, mem: Any, size: int) -> bytes:
        ptr = self.vk.vkMapMemory(self.device, mem, 0, size, 0)
        try:
            return bytes(ptr[:size])  # vkMapMemory hands back a cffi buffer of the mapping
        finally:
            self.vk.vkUnmapMemory(self.device, mem)

    def shader(self, stage: str) -> Any:
        vk = self.vk
        code = (SHADERS / SPIRV[stage]).read_bytes()
        mod = vk.vkCreateShaderModule(self.device, vk.VkShaderModuleCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, codeSize=len(code), pCode=code), None)
        self.later(vk.vkDestroyShaderModule, self.device, mod, None)
        return mod

    def submit(self, record: Callable[[Any], None]) -> None:
        vk = self.vk
        cmd = vk.vkAllocateCommandBuffers(self.device, vk.VkCommandBufferAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, commandPool=self.cmd_pool,
            level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY, commandBufferCount=1))[0]
        vk.vkBeginCommandBuffer(cmd, vk.VkCommandBufferBeginInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO, flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT))
        record(cmd)
        vk.vkEndCommandBuffer(cmd)
        fence = vk.vkCreateFence(self.device, vk.VkFenceCreateInfo(sType=vk.VK_STRUCTURE_TYPE_FENCE_CREATE_INFO), None)
        try:
            vk.vkQueueSubmit(self.queue, 1, [vk.VkSubmitInfo(sType=vk.VK_STRUCTURE_TYPE_SUBMIT_INFO,
                                                             commandBufferCount=1, pCommandBuffers=[cmd])], fence)
            vk.vkWaitForFences(self.device, 1, [fence], vk.VK_TRUE, 30 * 1_000_000_000)
        finally:
            vk.vkDestroyFence(self.device, fence, None)
            vk.vkFreeCommandBuffers(self.device, self.cmd_pool, 1, [cmd])

    # --- the proofs ----------------------------------------------------------
    def compute(self, inputs: scene.Inputs) -> bytes:
        vk = self.vk
        data = inputs.data_bytes()
        buf, mem = self.host_buffer(len(data), vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT)
        self.write(mem, data)
        dsl = vk.vkCreateDescriptorSetLayout(self.device, vk.VkDescriptorSetLayoutCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, bindingCount=1, pBindings=[
                vk.VkDescriptorSetLayoutBinding(binding=0, descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                                descriptorCount=1, stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT)]), None)
        self.later(vk.vkDestroyDescriptorSetLayout, self.device, dsl, None)
        layout = vk.vkCreatePipelineLayout(self.device, vk.VkPipelineLayoutCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, setLayoutCount=1, pSetLayouts=[dsl],
            pushConstantRangeCount=1, pPushConstantRanges=[
                vk.VkPushConstantRange(stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT, offset=0, size=4)]), None)
        self.later(vk.vkDestroyPipelineLayout, self.device, layout, None)
        stage = vk.VkPipelineShaderStageCreateInfo(sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                                                   stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                                                   module=self.shader("compute"), pName="main")
        pipeline = vk.vkCreateComputePipelines(self.device, vk.VK_NULL_HANDLE, 1, [vk.VkComputePipelineCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, stage=stage, layout=layout)], None)[0]
        self.later(vk.vkDestroyPipeline, self.device, pipeline, None)
        pool = vk.vkCreateDescriptorPool(self.device, vk.VkDescriptorPoolCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, maxSets=1, poolSizeCount=1,
            pPoolSizes=[vk.VkDescriptorPoolSize(type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=1)]), None)
        self.later(vk.vkDestroyDescriptorPool, self.device, pool, None)
        dset = vk.vkAllocateDescriptorSets(self.device, vk.VkDescriptorSetAllocateInfo(
            sType=vk.VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, descriptorPool=pool, descriptorSetCount=1,
            pSetLayouts=[dsl]))[0]
        vk.vkUpdateDescriptorSets(self.device, 1, [vk.VkWriteDescriptorSet(
            sType=vk.VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, dstSet=dset, dstBinding=0, descriptorCount=1,
            descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
            pBufferInfo=[vk.VkDescriptorBufferInfo(buffer=buf, offset=0, range=len(data))])], 0, None)
        n = len(inputs.data)
        push = vk.ffi.new("uint32_t[1]", [n])

        def record(cmd: Any) -> None:
            vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
            vk.vkCmdBindDescriptorSets(cmd, vk.VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, [dset], 0, None)
            vk.vkCmdPushConstants(cmd, layout, vk.VK_SHADER_STAGE_COMPUTE_BIT, 0, 4, push)
            vk.vkCmdDispatch(cmd, -(-n // scene.WORKGROUP), 1, 1)
            # make the shader writes visible to the host read after the fence
            vk.vkCmdPipelineBarrier(cmd, vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT, 0,
                                    1, [vk.VkMemoryBarrier(sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                                           srcAccessMask=vk.VK_ACCESS_SHADER_WRITE_BIT,
                                                           dstAccessMask=vk.VK_ACCESS_HOST_READ_BIT)],
                                    0, None, 0, None)

        self.submit(record)
        return self.read(mem, len(data))

    def render(self, inputs: scene.Inputs) -> bytes:
        vk = self.vk
        w, h, fmt = scene.WIDTH, scene.HEIGHT, vk.VK_FORMAT_R8G8B8A8_UNORM
        image = vk.vkCreateImage(self.device, vk.VkImageCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO, imageType=vk.VK_IMAGE_TYPE_2D, format=fmt,
            extent=vk.VkExtent3D(width=w, height=h, depth=1), mipLevels=1, arrayLayers=1,
            samples=vk.VK_SAMPLE_COUNT_1_BIT, tiling=vk.VK_IMAGE_TILING_OPTIMAL,
            usage=vk.VK_IMAGE_USAGE_COLOR_ATTACHMENT_BIT | vk.VK_IMAGE_USAGE_TRANSFER_SRC_BIT,
            sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE, initialLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED), None)
        self.later(vk.vkDestroyImage, self.device, image, None)
        mem = self.allocate(vk.vkGetImageMemoryRequirements(self.device, image), vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)
        vk.vkBindImageMemory(self.device, image, mem, 0)
        rng = vk.VkImageSubresourceRange(aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, baseMipLevel=0, levelCount=1,
                                         baseArrayLayer=0, layerCount=1)
        view = vk.vkCreateImageView(self.device, vk.VkImageViewCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO, image=image, viewType=vk.VK_IMAGE_VIEW_TYPE_2D,
            format=fmt, subresourceRange=rng), None)
        self.later(vk.vkDestroyImageView, self.device, view, None)
        attachment = vk.VkAttachmentDescription(
            format=fmt, samples=vk.VK_SAMPLE_COUNT_1_BIT, loadOp=vk.VK_ATTACHMENT_LOAD_OP_CLEAR,
            storeOp=vk.VK_ATTACHMENT_STORE_OP_STORE, stencilLoadOp=vk.VK_ATTACHMENT_LOAD_OP_DONT_CARE,
            stencilStoreOp=vk.VK_ATTACHMENT_STORE_OP_DONT_CARE, initialLayout=vk.VK_IMAGE_LAYOUT_UNDEFINED,
            finalLayout=vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL)
        subpass = vk.VkSubpassDescription(
            pipelineBindPoint=vk.VK_PIPELINE_BIND_POINT_GRAPHICS, colorAttachmentCount=1, pColorAttachments=[
                vk.VkAttachmentReference(attachment=0, layout=vk.VK_IMAGE_LAYOUT_COLOR_ATTACHMENT_OPTIMAL)])
        # the copy after the pass must wait for the colour writes
        dep = vk.VkSubpassDependency(srcSubpass=0, dstSubpass=vk.VK_SUBPASS_EXTERNAL,
                                     srcStageMask=vk.VK_PIPELINE_STAGE_COLOR_ATTACHMENT_OUTPUT_BIT,
                                     dstStageMask=vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                                     srcAccessMask=vk.VK_ACCESS_COLOR_ATTACHMENT_WRITE_BIT,
                                     dstAccessMask=vk.VK_ACCESS_TRANSFER_READ_BIT)
        rpass = vk.vkCreateRenderPass(self.device, vk.VkRenderPassCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_RENDER_PASS_CREATE_INFO, attachmentCount=1, pAttachments=[attachment],
            subpassCount=1, pSubpasses=[subpass], dependencyCount=1, pDependencies=[dep]), None)
        self.later(vk.vkDestroyRenderPass, self.device, rpass, None)
        fb = vk.vkCreateFramebuffer(self.device, vk.VkFramebufferCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_FRAMEBUFFER_CREATE_INFO, renderPass=rpass, attachmentCount=1,
            pAttachments=[view], width=w, height=h, layers=1), None)
        self.later(vk.vkDestroyFramebuffer, self.device, fb, None)
        layout = vk.vkCreatePipelineLayout(self.device, vk.VkPipelineLayoutCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO), None)
        self.later(vk.vkDestroyPipelineLayout, self.device, layout, None)
        stages = [vk.VkPipelineShaderStageCreateInfo(sType=vk.VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                                                     stage=st, module=self.shader(name), pName="main")
                  for st, name in ((vk.VK_SHADER_STAGE_VERTEX_BIT, "vertex"),
                                   (vk.VK_SHADER_STAGE_FRAGMENT_BIT, "fragment"))]
        viewport = vk.VkViewport(x=0.0, y=0.0, width=float(w), height=float(h), minDepth=0.0, maxDepth=1.0)
        scissor = vk.VkRect2D(offset=vk.VkOffset2D(x=0, y=0), extent=vk.VkExtent2D(width=w, height=h))
        info = vk.VkGraphicsPipelineCreateInfo(
            sType=vk.VK_STRUCTURE_TYPE_GRAPHICS_PIPELINE_CREATE_INFO, stageCount=2, pStages=stages,
            pVertexInputState=vk.VkPipelineVertexInputStateCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_VERTEX_INPUT_STATE_CREATE_INFO),
            pInputAssemblyState=vk.VkPipelineInputAssemblyStateCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_INPUT_ASSEMBLY_STATE_CREATE_INFO,
                topology=vk.VK_PRIMITIVE_TOPOLOGY_TRIANGLE_LIST, primitiveRestartEnable=vk.VK_FALSE),
            pViewportState=vk.VkPipelineViewportStateCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_VIEWPORT_STATE_CREATE_INFO, viewportCount=1,
                pViewports=[viewport], scissorCount=1, pScissors=[scissor]),
            pRasterizationState=vk.VkPipelineRasterizationStateCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_RASTERIZATION_STATE_CREATE_INFO,
                polygonMode=vk.VK_POLYGON_MODE_FILL, cullMode=vk.VK_CULL_MODE_NONE,
                frontFace=vk.VK_FRONT_FACE_COUNTER_CLOCKWISE, lineWidth=1.0),
            pMultisampleState=vk.VkPipelineMultisampleStateCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_MULTISAMPLE_STATE_CREATE_INFO,
                rasterizationSamples=vk.VK_SAMPLE_COUNT_1_BIT),
            pColorBlendState=vk.VkPipelineColorBlendStateCreateInfo(
                sType=vk.VK_STRUCTURE_TYPE_PIPELINE_COLOR_BLEND_STATE_CREATE_INFO, attachmentCount=1,
                pAttachments=[vk.VkPipelineColorBlendAttachmentState(
                    blendEnable=vk.VK_FALSE, colorWriteMask=vk.VK_COLOR_COMPONENT_R_BIT | vk.VK_COLOR_COMPONENT_G_BIT
                    | vk.VK_COLOR_COMPONENT_B_BIT | vk.VK_COLOR_COMPONENT_A_BIT)]),
            layout=layout, renderPass=rpass, subpass=0)
        pipeline = vk.vkCreateGraphicsPipelines(self.device, vk.VK_NULL_HANDLE, 1, [info], None)[0]
        self.later(vk.vkDestroyPipeline, self.device, pipeline, None)
        size = w * h * 4
        buf, bmem = self.host_buffer(size, vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT)
        clear = vk.VkClearValue(color=vk.VkClearColorValue(float32=list(inputs.clear_float)))

        def record(cmd: Any) -> None:
            vk.vkCmdBeginRenderPass(cmd, vk.VkRenderPassBeginInfo(
                sType=vk.VK_STRUCTURE_TYPE_RENDER_PASS_BEGIN_INFO, renderPass=rpass, framebuffer=fb,
                renderArea=scissor, clearValueCount=1, pClearValues=[clear]), vk.VK_SUBPASS_CONTENTS_INLINE)
            vk.vkCmdBindPipeline(cmd, vk.VK_PIPELINE_BIND_POINT_GRAPHICS, pipeline)
            vk.vkCmdDraw(cmd, 12, 1, 0, 0)
            vk.vkCmdEndRenderPass(cmd)
            vk.vkCmdCopyImageToBuffer(cmd, image, vk.VK_IMAGE_LAYOUT_TRANSFER_SRC_OPTIMAL, buf, 1, [
                vk.VkBufferImageCopy(bufferOffset=0, bufferRowLength=0, bufferImageHeight=0,
                                     imageSubresource=vk.VkImageSubresourceLayers(
                                         aspectMask=vk.VK_IMAGE_ASPECT_COLOR_BIT, mipLevel=0, baseArrayLayer=0,
                                         layerCount=1),
                                     imageOffset=vk.VkOffset3D(x=0, y=0, z=0),
                                     imageExtent=vk.VkExtent3D(width=w, height=h, depth=1))])
            vk.vkCmdPipelineBarrier(cmd, vk.VK_PIPELINE_STAGE_TRANSFER_BIT, vk.VK_PIPELINE_STAGE_HOST_BIT, 0, 1,
                                    [vk.VkMemoryBarrier(sType=vk.VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                                                        srcAccessMask=vk.VK_ACCESS_TRANSFER_WRITE_BIT,
                                                        dstAccessMask=vk.VK_ACCESS_HOST_READ_BIT)],
                                    0, None, 0, None)

        self.submit(record)
        return self.read(bmem, size)


def canary(artifacts: Path | None = None, *, require_hardware: bool = False, report: Report | None = None,
           seed: int | None = None) -> Report:
    report = report or Report("vulkan")
    with report.timed("import"):
        vk = _import_vulkan()
    ctx = _Vk(vk)
    try:
        with report.timed("device"):
            ctx.create_instance()
            try:
                pds = vk.vkEnumeratePhysicalDevices(ctx.instance)
            except vk.VkError as exc:
                raise DeviceAbsentError(f"vkEnumeratePhysicalDevices failed: {type(exc).__name__}") from None
            if not pds:
                raise DeviceAbsentError(f"no Vulkan physical device (ICDs from {_icd_hint()})")
            descs = [ctx.describe(pd) for pd in pds]
            i = policy.pick(list(range(len(pds))), lambda k: descs[k], require_hardware=False)
            d = descs[i]
            report.adapter = Adapter(vendor=d["vendor"], device=d["device"], backend=d["backend"], type=d["type"],
                                     driver=d["driver"], kind=d["kind"])
            if require_hardware:
                policy.enforce_hardware(d)
            ctx.create_device(pds[i])
        inputs = scene.make_inputs(seed)
        with report.timed("compute"):
            out = ctx.compute(inputs)
        scene.check_compute(report, inputs, out)
        with report.timed("render"):
            rgba = ctx.render(inputs)
        scene.check_render(report, inputs, rgba)
        if artifacts is not None:
            png = write_rgba(Path(artifacts) / "vulkan-render.png", scene.WIDTH, scene.HEIGHT, rgba)
            report.artifacts.append(png.name)
    except FlywheelError:
        raise
    except vk.VkError as exc:
        raise UnsupportedError(f"Vulkan call failed: {type(exc).__name__}") from None
    finally:
        ctx.close()
    return report.finish()

// Dawn (npm `webgpu`) canary: runs the flywheel GPU scene and prints one JSON line.
//
// Input on stdin (JSON, from flywheel_runtime.canary.dawn): {data_b64, clear, width,
// height, workgroup, pad, wgsl, flags}.  Output on stdout: {status, adapter, compute_b64,
// render_b64, timings} -- raw readbacks only (the render's buffer filled with `pad`
// before the copy); the Python side does every check, so a pass is always
// computed from what came back from the GPU.
import { create, globals } from 'webgpu';

const t0 = performance.now();
const timings = {};
const lap = (name, since) => { timings[name] = (performance.now() - since) / 1000; return performance.now(); };

function readStdin() {
  return new Promise((resolve, reject) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}

// stdout to a pipe is asynchronous in Node: resolve only once the line is flushed,
// so exiting afterwards cannot truncate it.
function emit(obj) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify({ ...obj, timings }) + '\n', resolve));
}

async function readBuffer(device, src, size) {
  const rb = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, rb, 0, size);
  device.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const out = Buffer.from(rb.getMappedRange().slice(0));
  rb.unmap();
  return out;
}

async function main() {
  const input = JSON.parse(await readStdin());
  Object.assign(globalThis, globals);
  const gpu = create(input.flags || []);
  let t = lap('create', t0);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    await emit({ status: 'no-adapter' });
    return;
  }
  const info = adapter.info || {};
  const adapterInfo = {};
  for (const k of ['vendor', 'architecture', 'device', 'description', 'backendType', 'adapterType', 'driver']) {
    if (info[k] !== undefined) adapterInfo[k] = String(info[k]);
  }
  adapterInfo.isFallbackAdapter = Boolean(adapter.isFallbackAdapter ?? info.isFallbackAdapter);
  const device = await adapter.requestDevice();
  const errors = [];
  device.addEventListener?.('uncapturederror', (e) => errors.push(String(e.error?.message || e)));
  t = lap('adapter', t);

  const module = device.createShaderModule({ code: input.wgsl });
  const data = Buffer.from(input.data_b64, 'base64');
  // compute
  const storage = device.createBuffer({
    size: data.length, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(storage, 0, data);
  const cpipe = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'cs_main' } });
  const bind = device.createBindGroup({
    layout: cpipe.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: storage } }],
  });
  let enc = device.createCommandEncoder();
  const cp = enc.beginComputePass();
  cp.setPipeline(cpipe);
  cp.setBindGroup(0, bind);
  cp.dispatchWorkgroups(Math.ceil(data.length / 4 / input.workgroup));
  cp.end();
  device.queue.submit([enc.finish()]);
  const computeOut = await readBuffer(device, storage, data.length);
  t = lap('compute', t);

  // offscreen render, read back through a buffer with 256-byte aligned rows
  const { width, height } = input;
  const format = 'rgba8unorm';
  const tex = device.createTexture({
    size: [width, height, 1], format, usage: GPUTextureUsage.RENDER_ATTACHMENT | GPUTextureUsage.COPY_SRC,
  });
  const rpipe = device.createRenderPipeline({
    layout: 'auto',
    vertex: { module, entryPoint: 'vs_main', buffers: [] },
    primitive: { topology: 'triangle-list', cullMode: 'none' },
    fragment: { module, entryPoint: 'fs_main', targets: [{ format }] },
  });
  const rowPitch = Math.ceil((width * 4) / 256) * 256;
  const rb = device.createBuffer({ size: rowPitch * height, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  // pad bytes first: the Python side reads the row pitch back from where they survive
  device.queue.writeBuffer(rb, 0, new Uint8Array(rowPitch * height).fill(input.pad));
  const [r, g, b, a] = input.clear.map((c) => c / 255);
  enc = device.createCommandEncoder();
  const rp = enc.beginRenderPass({
    colorAttachments: [{ view: tex.createView(), loadOp: 'clear', storeOp: 'store', clearValue: { r, g, b, a } }],
  });
  rp.setPipeline(rpipe);
  rp.draw(12);
  rp.end();
  enc.copyTextureToBuffer({ texture: tex }, { buffer: rb, bytesPerRow: rowPitch, rowsPerImage: height },
    [width, height, 1]);
  device.queue.submit([enc.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const renderOut = Buffer.from(rb.getMappedRange().slice(0));
  rb.unmap();
  lap('render', t);
  device.destroy();
  await emit({
    status: 'ran', adapter: adapterInfo, errors, compute_b64: computeOut.toString('base64'),
    render_b64: renderOut.toString('base64'),
  });
}

main().then(() => process.exit(0)).catch(async (err) => {
  await emit({ status: 'error', message: String(err && err.message ? err.message : err) });
  process.exit(3);
});

// One ONNX Runtime JavaScript session served over stdin/stdout to svdq_edge.runtime.runtimes.node.NodeSession.
//
//   node ort_session.mjs MODEL.onnx THREADS PACKAGE [EXTERNAL_DATA]
//
// EXTERNAL_DATA: the model's external data file (model.onnx.data, or model_q4.onnx_data in transformers.js's
// layout), which the web build is handed as bytes under the name the graph refers to.
// PACKAGE: onnxruntime-node (native CPU kernels), onnxruntime-web (the WASM build browsers run; here in Node), or
// onnxruntime-web/webgpu (the WebGPU/JSEP bundle transformers.js loads in browsers; its WASM CPU kernels here).
//
// Every message, both ways: uint32 LE header length, uint32 LE payload length, a JSON header, the payload bytes.
// Request header  {tensors: [{name, type, dims, bytes}]}: the feed, its tensors' raw bytes back to back.
// Response header {tensors: [...], seconds}: every output in session.outputNames order; `seconds` is the time of
// session.run alone, measured here, so the pipe's round trip is not counted as the model's latency.
// The first response (no request) is {ready: true, version, inputs, outputs, rss_before} (bytes, before the model
// loaded); an error is {error: "one line"}.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';

const [model, threads, pkg, externalData] = process.argv.slice(2);
const web = pkg.startsWith('onnxruntime-web');
const ort = await import(web ? pkg : 'onnxruntime-node');

const ARRAYS = {
  float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array, uint8: Uint8Array,
  int8: Int8Array, float64: Float64Array,
};

function send(header, payload = Buffer.alloc(0)) {
  const json = Buffer.from(JSON.stringify(header));
  const lengths = Buffer.alloc(8);
  lengths.writeUInt32LE(json.length, 0);
  lengths.writeUInt32LE(payload.length, 4);
  process.stdout.write(Buffer.concat([lengths, json, payload]));
}

function toTensor(spec, bytes) {
  const Array_ = ARRAYS[spec.type];
  if (!Array_) throw new Error(`unsupported input type ${spec.type} for ${spec.name}`);
  const copy = Buffer.from(bytes); // aligned storage: a typed array view needs an offset that is a multiple of 8
  return new ort.Tensor(spec.type, new Array_(copy.buffer, copy.byteOffset, spec.bytes / Array_.BYTES_PER_ELEMENT),
    spec.dims);
}

async function serve(session, header, payload) {
  const feed = {};
  let at = 0;
  for (const spec of header.tensors) {
    feed[spec.name] = toTensor(spec, payload.subarray(at, at + spec.bytes));
    at += spec.bytes;
  }
  const start = performance.now();
  const results = await session.run(feed);
  const seconds = (performance.now() - start) / 1e3;
  const tensors = [];
  const parts = [];
  for (const name of session.outputNames) {
    const t = results[name];
    const data = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    tensors.push({ name, type: t.type, dims: t.dims.map(Number), bytes: data.length });
    parts.push(data);
  }
  send({ tensors, seconds }, Buffer.concat(parts));
}

async function open() {
  if (!web) {
    const options = { executionProviders: ['cpu'], graphOptimizationLevel: 'all' };
    if (Number(threads) > 0) options.intraOpNumThreads = Number(threads);
    return ort.InferenceSession.create(model, options);
  }
  // the web build reads bytes, as a page fetches them; external data travels under the name the graph refers to.
  // The WebGPU/JSEP bundle fetches its worker script by URL for threads, which Node cannot: one thread there.
  ort.env.wasm.numThreads = pkg === 'onnxruntime-web/webgpu' ? 1 : Math.max(Number(threads), 0);
  const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  if (externalData) {
    options.externalData = [{ path: basename(externalData), data: readFileSync(externalData) }];
  }
  return ort.InferenceSession.create(readFileSync(model), options);
}

async function main() {
  const rssBefore = process.memoryUsage().rss; // the runtime is loaded; the model is not
  let session;
  try {
    session = await open();
  } catch (e) {
    send({ error: String(e.message || e).split('\n')[0] });
    return;
  }
  const version = ort.env.versions?.[web ? 'web' : 'node'] ?? null;
  const used = web ? ort.env.wasm.numThreads : Number(threads);
  send({ ready: true, version, threads: used, inputs: session.inputNames,
    outputs: session.outputNames, rss_before: rssBefore });
  let buffered = Buffer.alloc(0);
  let queue = Promise.resolve();
  process.stdin.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 8) {
      const jsonLength = buffered.readUInt32LE(0);
      const payloadLength = buffered.readUInt32LE(4);
      const end = 8 + jsonLength + payloadLength;
      if (buffered.length < end) break;
      const header = JSON.parse(buffered.subarray(8, 8 + jsonLength).toString());
      const payload = Buffer.from(buffered.subarray(8 + jsonLength, end));
      buffered = buffered.subarray(end);
      queue = queue.then(() => serve(session, header, payload))
        .catch((e) => send({ error: String(e.message || e).split('\n')[0] }));
    }
  });
  process.stdin.on('end', () => queue.then(() => process.exit(0)));
}

main();

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
import { runFeed } from './feed.mjs';
import { send, serveFrames } from './frames.mjs';

const [model, threads, pkg, externalData] = process.argv.slice(2);
const web = pkg.startsWith('onnxruntime-web');
const ort = await import(web ? pkg : 'onnxruntime-node');

async function serve(session, header, payload) {
  const { tensors, parts, seconds } = await runFeed(ort, session, header.tensors, payload);
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
  serveFrames((header, payload) => serve(session, header, payload));
}

main();

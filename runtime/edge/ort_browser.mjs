// One onnxruntime-web session inside headless Chromium, served over stdin/stdout to
// svdq_edge.runtime.runtimes.node.NodeSession with ort_session.mjs's protocol (the same frames and headers).
//
//   node ort_browser.mjs MODEL.onnx THREADS PACKAGE EXTERNAL_DATA|- CHROMIUM
//
// PACKAGE: onnxruntime-web (its plain WASM build, ort.wasm.min.mjs: what a page that imports onnxruntime-web runs) or
// onnxruntime-web/webgpu (the WebGPU/JSEP bundle transformers.js loads; its WASM EP here, no GPU). The page fetches the
// runtime and the model from 127.0.0.1 (browser.mjs); tensors cross into the page as base64; `seconds` is the time
// of session.run measured inside the page.
import { dirname, basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPage, serve } from './browser.mjs';
import { oneLine, send, serveFrames } from './frames.mjs';

const [model, threads, pkg, externalData, chromium] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const BUNDLES = { 'onnxruntime-web': 'ort.wasm.min.mjs', 'onnxruntime-web/webgpu': 'ort.webgpu.min.mjs' };

// In the page: open the session (`window.svdqSession`), then run feeds.
async function openInPage(req) {
  const ort = await import(`/ort/${req.bundle}`);
  ort.env.wasm.wasmPaths = '/ort/';
  ort.env.wasm.numThreads = req.threads > 0 ? req.threads : (navigator.hardwareConcurrency || 1);
  const options = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  if (req.data) options.externalData = [{ path: req.data, data: `/model/${req.data}` }];
  window.svdqOrt = ort;
  window.svdqSession = await ort.InferenceSession.create(`/model/${req.model}`, options);
  return { version: ort.env.versions?.web ?? null, threads: ort.env.wasm.numThreads,
    isolated: self.crossOriginIsolated, inputs: window.svdqSession.inputNames,
    outputs: window.svdqSession.outputNames };
}

async function runInPage(specs, b64) {
  const { runFeed } = await import('/edge/feed.mjs');
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const { tensors, parts, seconds } = await runFeed(window.svdqOrt, window.svdqSession, specs, bytes);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { all.set(p, off); off += p.length; }
  let binary = '';
  for (let i = 0; i < all.length; i += 0x8000) binary += String.fromCharCode(...all.subarray(i, i + 0x8000));
  return { tensors, seconds, b64: btoa(binary) };
}

async function main() {
  const rssBefore = process.memoryUsage().rss;
  const mounts = { '/ort/': join(here, '..', 'node_modules', 'onnxruntime-web', 'dist'), '/model/': dirname(model),
    '/edge/': here };
  const { server, url } = await serve(mounts);
  let opened;
  let ready;
  try {
    if (!BUNDLES[pkg]) throw new Error(`unknown package ${pkg}`);
    opened = await openPage(chromium, url);
    ready = await opened.page.evaluate(openInPage, { bundle: BUNDLES[pkg], model: basename(model),
      data: externalData && externalData !== '-' ? basename(externalData) : null, threads: Number(threads) });
  } catch (e) {
    const errors = opened?.errors ?? [];
    send({ error: errors.length ? `${oneLine(e)}; page: ${errors.at(-1)}` : oneLine(e) });
    await opened?.browser.close();
    server.close();
    return;
  }
  send({ ready: true, ...ready, rss_before: rssBefore });
  serveFrames(async (header, payload) => {
    const out = await opened.page.evaluate(runInPage, header.tensors, payload.toString('base64'));
    send({ tensors: out.tensors, seconds: out.seconds }, Buffer.from(out.b64, 'base64'));
  }, async () => {
    await opened.browser.close();
    server.close();
  });
}

main();

// transformers.js in headless Chromium, as a web page runs it: its browser bundle (transformers.min.js, the file CDNs
// serve, with onnxruntime-web's WebGPU/JSEP build inside; the WASM EP on the CPU here), pages and model files served
// from 127.0.0.1 (browser.mjs). Runs one request of tjs_tasks.mjs.
//
//   node tjs_browser.mjs REQUEST.json RESULT.json
//
// REQUEST.json: {root, model, task, inputs, chromium, threads?, ...}: `chromium` is the browser binary. The result is
// written to RESULT.json; an error is {error: "one line"} there, exit code 1.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPage, serve } from './browser.mjs';

const here = dirname(fileURLToPath(import.meta.url)); // scripts-<hash>/ in the install folder (node_modules)
const tjsDist = join(here, '..', 'node_modules', '@huggingface', 'transformers', 'dist');
// the .wasm of the onnxruntime-web build bundled in transformers.min.js: transformers.js's own (nested) dependency
const nestedOrt = join(tjsDist, '..', 'node_modules', 'onnxruntime-web', 'dist');
const ortDist = existsSync(nestedOrt) ? nestedOrt : join(here, '..', 'node_modules', 'onnxruntime-web', 'dist');

async function main() {
  const [requestPath, resultPath] = process.argv.slice(2);
  const request = JSON.parse(readFileSync(requestPath, 'utf8'));
  const { server, url } = await serve({ '/tjs/': tjsDist, '/ort/': ortDist, '/edge/': here, '/models/': request.root });
  let opened = null;
  try {
    opened = await openPage(request.chromium, url);
    const result = await opened.page.evaluate(async (req) => {
      const T = await import('/tjs/transformers.min.js');
      const { runTask } = await import('/edge/tjs_tasks.mjs');
      T.env.allowRemoteModels = false;
      T.env.allowLocalModels = true;
      T.env.localModelPath = '/models/';
      T.env.useBrowserCache = false;
      T.env.backends.onnx.wasm.wasmPaths = '/ort/'; // served here: no CDN
      if (req.threads) T.env.backends.onnx.wasm.numThreads = req.threads;
      try {
        const out = await runTask(T, req);
        return { ...out, version: T.env.version, isolated: self.crossOriginIsolated,
          threads: T.env.backends.onnx.wasm.numThreads };
      } catch (e) {
        return { error: String(e?.message ?? e).split('\n')[0] };
      }
    }, request);
    writeFileSync(resultPath, JSON.stringify(result));
    if (result.error) process.exitCode = 1;
  } catch (e) {
    const why = String(e?.message ?? e).split('\n')[0];
    const errors = opened?.errors ?? [];
    writeFileSync(resultPath, JSON.stringify({ error: errors.length ? `${why}; page: ${errors.at(-1)}` : why }));
    process.exitCode = 1;
  } finally {
    await opened?.browser.close();
    server.close();
  }
}

main();

// transformers.js in headless Chromium, as a web page runs it: its browser bundle (transformers.min.js, the file CDNs
// serve, with onnxruntime-web's WebGPU/JSEP build inside; the WASM EP on the CPU here), pages and model files served
// from 127.0.0.1, cross-origin isolated so the WASM build may use threads. Runs one request of tjs_tasks.mjs.
//
//   node tjs_browser.mjs REQUEST.json RESULT.json
//
// REQUEST.json: {root, model, task, inputs, chromium, threads?, ...}: `chromium` is the browser binary. The result is
// written to RESULT.json; an error is {error: "one line"} there, exit code 1.
import { createReadStream, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const here = dirname(fileURLToPath(import.meta.url)); // the install folder: node_modules is beside this script
const tjsDist = join(here, 'node_modules', '@huggingface', 'transformers', 'dist');
// the .wasm of the onnxruntime-web build bundled in transformers.min.js: transformers.js's own (nested) dependency
const nestedOrt = join(tjsDist, '..', 'node_modules', 'onnxruntime-web', 'dist');
const ortDist = existsSync(nestedOrt) ? nestedOrt : join(here, 'node_modules', 'onnxruntime-web', 'dist');

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.html': 'text/html', '.txt': 'text/plain' };
const PAGE = '<!doctype html><meta charset="utf-8"><title>svdq-edge transformers.js check</title>';

function serve(root) {
  const mounts = { '/tjs/': tjsDist, '/ort/': ortDist, '/edge/': here, '/models/': root };
  return createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://127.0.0.1').pathname);
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store' };
    if (path === '/') {
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html' });
      res.end(PAGE);
      return;
    }
    const prefix = Object.keys(mounts).find((m) => path.startsWith(m));
    const base = prefix && resolve(mounts[prefix]);
    const file = prefix && normalize(join(base, path.slice(prefix.length)));
    if (!file || !file.startsWith(base) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, headers);
      res.end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': statSync(file).size });
    createReadStream(file).pipe(res);
  });
}

async function main() {
  const [requestPath, resultPath] = process.argv.slice(2);
  const request = JSON.parse(readFileSync(requestPath, 'utf8'));
  const server = serve(request.root);
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}/`;
  const browser = await puppeteer.launch({ executablePath: request.chromium, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'] });
  const errors = [];
  try {
    const page = await browser.newPage();
    page.on('pageerror', (e) => errors.push(String(e.message ?? e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(url);
    const result = await page.evaluate(async (req) => {
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
    writeFileSync(resultPath, JSON.stringify({ error: errors.length ? `${why}; page: ${errors.at(-1)}` : why }));
    process.exitCode = 1;
  } finally {
    await browser.close();
    server.close();
  }
}

main();

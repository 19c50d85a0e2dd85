// Headless Chromium for the browser checks: a static server on 127.0.0.1 (cross-origin isolated, so the WASM builds
// may use threads; nothing is fetched from elsewhere) and the browser, driven by puppeteer-core.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve } from 'node:path';
import puppeteer from 'puppeteer-core';

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.html': 'text/html', '.txt': 'text/plain' };
const PAGE = '<!doctype html><meta charset="utf-8"><title>svdq-edge browser check</title>';

// `mounts`: {'/prefix/': folder}; '/' is an empty page. Resolves to {server, url}.
export async function serve(mounts) {
  const server = createServer((req, res) => {
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
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

// A page of `url` in a new headless Chromium at `executable`; `errors` collects the page's errors.
export async function openPage(executable, url) {
  const browser = await puppeteer.launch({ executablePath: executable, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'] });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e.message ?? e)));
  page.on('console', (m) => { // a 404 (the page's favicon) is no error of the model's
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  await page.goto(url);
  return { browser, page, errors };
}

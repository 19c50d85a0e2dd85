// The framing both session scripts (ort_session.mjs in Node, ort_browser.mjs in Chromium) speak with
// svdq_edge.runtime.runtimes.node.NodeSession, both ways: uint32 LE header length, uint32 LE payload length, a JSON
// header, the payload bytes.

export const oneLine = (e) => String(e?.message ?? e).split('\n')[0];

export function send(header, payload = Buffer.alloc(0)) {
  const json = Buffer.from(JSON.stringify(header));
  const lengths = Buffer.alloc(8);
  lengths.writeUInt32LE(json.length, 0);
  lengths.writeUInt32LE(payload.length, 4);
  process.stdout.write(Buffer.concat([lengths, json, payload]));
}

// Calls `handle(header, payload)` for each request on stdin, one at a time in arrival order; a failed request is
// answered {error: "one line"}. When stdin ends, `done()` runs after the last request and the process exits.
export function serveFrames(handle, done = async () => {}) {
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
      queue = queue.then(() => handle(header, payload)).catch((e) => send({ error: oneLine(e) }));
    }
  });
  process.stdin.on('end', () => queue.then(done).then(() => process.exit(0)));
}

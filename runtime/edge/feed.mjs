// One session.run on a feed sent as raw bytes, the same code in Node (ort_session.mjs) and in a Chromium page
// (ort_browser.mjs imports it there from /edge/): specs [{name, type, dims, bytes}] describe `bytes` (Uint8Array, the
// tensors back to back); returns {tensors, parts, seconds}: every output in session.outputNames order, its raw bytes,
// and the time of session.run alone.
const ARRAYS = {
  float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array, uint8: Uint8Array,
  int8: Int8Array, float64: Float64Array,
};

export async function runFeed(ort, session, specs, bytes) {
  const feed = {};
  let at = 0;
  for (const spec of specs) {
    const Array_ = ARRAYS[spec.type];
    if (!Array_) throw new Error(`unsupported input type ${spec.type} for ${spec.name}`);
    // a copy in its own buffer: a typed array view needs an offset that is a multiple of its element size
    const copy = Uint8Array.prototype.slice.call(bytes, at, at + spec.bytes);
    feed[spec.name] = new ort.Tensor(spec.type, new Array_(copy.buffer, 0, spec.bytes / Array_.BYTES_PER_ELEMENT),
      spec.dims);
    at += spec.bytes;
  }
  const start = performance.now();
  const results = await session.run(feed);
  const seconds = (performance.now() - start) / 1e3;
  const tensors = [];
  const parts = [];
  for (const name of session.outputNames) {
    const t = results[name];
    const data = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    tensors.push({ name, type: t.type, dims: t.dims.map(Number), bytes: data.length });
    parts.push(data);
  }
  return { tensors, parts, seconds };
}

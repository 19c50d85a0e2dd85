// transformers.js in Node (its onnxruntime-node backend, CPU): runs one request of tjs_tasks.mjs on a local folder.
//
//   node tjs_node.mjs REQUEST.json RESULT.json
//
// REQUEST.json: {root, model, task, inputs, ...}: `root` is the folder holding the model folder `model`. The result
// is written to RESULT.json (transformers.js logs to stdout); an error is {error: "one line"} there, exit code 1.
import { readFileSync, writeFileSync } from 'node:fs';
import * as T from '@huggingface/transformers';
import { runTask } from './tjs_tasks.mjs';

const [requestPath, resultPath] = process.argv.slice(2);
const request = JSON.parse(readFileSync(requestPath, 'utf8'));
T.env.allowRemoteModels = false; // local folders only: never the hub
T.env.allowLocalModels = true;
T.env.localModelPath = request.root.endsWith('/') ? request.root : `${request.root}/`;
try {
  const result = await runTask(T, request);
  writeFileSync(resultPath, JSON.stringify({ ...result, version: T.env.version }));
} catch (e) {
  writeFileSync(resultPath, JSON.stringify({ error: String(e?.message ?? e).split('\n')[0] }));
  process.exitCode = 1;
}

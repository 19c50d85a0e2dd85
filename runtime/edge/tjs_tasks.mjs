// What a transformers.js user runs on one of our folders, the same code in Node and in a browser page: the caller
// imports transformers.js (`T`) for its platform, points it at the local folders, and passes one request.
//
// Request {model, task, inputs: [string], max_new_tokens?, chat?}; `model` is the folder's name under
// T.env.localModelPath. The model's dtype, external data and chat template come from the folder's own config files
// (svdq-edge export --layout transformers.js), so no option names them here.
//   feature-extraction   -> {embeddings: [[float]]}    pipeline(...)(texts, {pooling: 'mean'}), not normalized
//   text-classification  -> {labels: [string], scores: [{label: p}]}  the pipeline's top label and every label's
//                           softmax probability, per text
//   text-generation      -> {prompts: [[id]], generated: [[id]]}  greedy; with `chat`, the prompt goes through the
//                           tokenizer's chat template (add_generation_prompt), as the chat pipeline does
export async function runTask(T, request) {
  const { model, task, inputs } = request;
  if (task === 'feature-extraction') {
    const extract = await T.pipeline('feature-extraction', model);
    const out = await extract(inputs, { pooling: 'mean', normalize: false });
    return { embeddings: out.tolist() };
  }
  if (task === 'text-classification') {
    const classify = await T.pipeline('text-classification', model);
    const labels = [];
    const scores = [];
    for (const text of inputs) {
      const all = await classify(text, { top_k: null }); // every label, best first
      labels.push(all[0].label);
      scores.push(Object.fromEntries(all.map(({ label, score }) => [label, score])));
    }
    return { labels, scores };
  }
  if (task === 'text-generation') {
    const tokenizer = await T.AutoTokenizer.from_pretrained(model);
    const lm = await T.AutoModelForCausalLM.from_pretrained(model);
    const prompts = [];
    const generated = [];
    for (const text of inputs) {
      const ids = request.chat
        ? tokenizer.apply_chat_template([{ role: 'user', content: text }],
          { add_generation_prompt: true, tokenize: true, return_tensor: false, return_dict: false })
        : tokenizer.encode(text);
      const input_ids = new T.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);
      const out = await lm.generate({ input_ids, attention_mask: T.ones([1, ids.length]),
        max_new_tokens: request.max_new_tokens ?? 32, do_sample: false });
      prompts.push(ids.map(Number));
      generated.push(out.tolist()[0].map(Number).slice(ids.length));
    }
    return { prompts, generated };
  }
  throw new Error(`unknown task ${task}`);
}

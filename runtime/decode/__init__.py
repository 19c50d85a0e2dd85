"""Causal LMs under a runtime: KV-cache sessions, generation, perplexity, decode latency, genai, llama.cpp."""

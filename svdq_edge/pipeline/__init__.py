"""Whole-model orchestration: quantize in memory or layer by layer, transcode GGUF, compare methods."""

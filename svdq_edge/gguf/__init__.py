"""GGUF files: exact reading and conversion to Hugging Face folders."""

"""Where models come from: hub ids, local folders, lazy safetensors."""

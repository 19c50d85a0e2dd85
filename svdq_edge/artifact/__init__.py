"""The quantized folder on disk: save, load, side files, safe output commits."""

"""ONNX pieces: one quantized linear or embedding in, nodes and initializers out."""

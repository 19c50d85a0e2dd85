"""Folder targets beside model.onnx: onnxruntime-genai, ORT format (mobile), the web."""

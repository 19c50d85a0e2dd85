"""Traced exports (torch.onnx) and the splice of quantized fragments into them."""

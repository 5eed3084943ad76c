"""Complexity classifier: training, ONNX export, evaluation and serving-time scoring."""

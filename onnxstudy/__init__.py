"""onnxstudy: export PyTorch and Model Zoo models to ONNX variants, check them, time them."""

__version__ = "0.1.0"

"""Export trained models for deployment: ONNX (fp32 and int8), checked against PyTorch.

See :func:`kdexam.export.onnx.export_onnx`.
"""

from kdexam.export.onnx import export_onnx

__all__ = ["export_onnx"]

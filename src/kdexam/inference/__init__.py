"""Predict with trained students (and teachers) in PyTorch or ONNX Runtime, tokenization included.

See :func:`kdexam.inference.predictor.load_student` and :class:`kdexam.inference.predictor.Predictor`.
"""

from kdexam.inference.inputs import read_inputs
from kdexam.inference.predictor import Predictor, load_student

__all__ = ["Predictor", "load_student", "read_inputs"]

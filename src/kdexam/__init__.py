"""kdexam: distil fine-tuned transformers into small, fast students, and measure which is best, at what cost.

>>> import kdexam
>>> clf = kdexam.load_student("runs/bilstm-ms")   # a Predictor (PyTorch or ONNX Runtime)
>>> clf.predict(["a gripping, funny film"])
"""

import os

# ONNX Runtime >= 1.25 on Linux and macOS keeps a device id and an event database under
# ~/.cache/Microsoft/DeveloperTools and a session file in $TMPDIR, and uploads usage events, unless
# ORT_DISABLE_TELEMETRY is set before onnxruntime is imported. kdexam imports onnxruntime only after
# this line; a user who wants ONNX Runtime's default sets ORT_DISABLE_TELEMETRY=0 (docs/reliability.md).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["load_student", "__version__"]


def __getattr__(name: str):
    # lazy: `import kdexam` stays light (no torch, transformers or onnxruntime until used)
    if name == "load_student":
        from kdexam.api import load_student

        return load_student
    raise AttributeError(f"module 'kdexam' has no attribute {name!r}")

"""kdexam: distil fine-tuned transformers into small, fast students, and measure which is best, at what cost.

>>> import kdexam
>>> clf = kdexam.load_student("runs/bilstm-ms")   # a Predictor (PyTorch or ONNX Runtime)
>>> clf.predict(["a gripping, funny film"])
"""

__version__ = "0.1.0"
__all__ = ["load_student", "__version__"]


def __getattr__(name: str):
    # lazy: `import kdexam` stays light (no torch, transformers or onnxruntime until used)
    if name == "load_student":
        from kdexam.api import load_student

        return load_student
    raise AttributeError(f"module 'kdexam' has no attribute {name!r}")

"""kdexam: distil fine-tuned transformers into small, fast students, and measure which is best, at what cost."""

__version__ = "0.1.0"

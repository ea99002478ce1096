"""The task kinds kdexam handles, and what each needs: head size, primary metric and metrics
(the gold loss is the ``gold`` objective, :class:`kdexam.objectives.gold.GoldLoss`; outputs are
decoded by :func:`kdexam.evaluation.predict.decode`).

- ``classification``: one label per text or text pair; cross-entropy.
- ``token-classification``: one tag per word; the label sits on the word's first
  subword and every other position is ``-100`` (ignored by the loss).
- ``regression``: one real number per text or pair; mean squared error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from kdexam.evaluation import metrics as M

IGNORE_INDEX = -100
TASK_KINDS = ("classification", "token-classification", "regression")
HIGHER_IS_BETTER = {"mse": False}


@dataclass
class Task:
    kind: str
    labels: list[str] | None = None
    text_pair: bool = False
    primary_metric: str = ""
    dataset: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.primary_metric:
            self.primary_metric = self.default_primary_metric()

    # ---- shape of the head -------------------------------------------------
    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels or [])

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels or [])}

    def default_primary_metric(self) -> str:
        if self.kind == "regression":
            return "pearson"
        if self.kind == "token-classification" and M.is_bio_scheme(self.labels or []):
            return "span_f1"
        return "accuracy"

    @property
    def shape(self) -> str:
        """What the task reads and predicts, in words: ``classification of text pairs``."""
        return f"{self.kind}{' of text pairs' if self.text_pair else ''}"

    @property
    def greater_is_better(self) -> bool:
        return HIGHER_IS_BETTER.get(self.primary_metric, True)

    # ---- metrics -------------------------------------------------------------
    def metrics(self, gold: list, pred: list) -> dict:
        """Metrics on label strings (classification), word tag sequences (tagging) or floats."""
        if self.kind == "classification":
            return M.classification_metrics([str(g) for g in gold], [str(p) for p in pred], self.labels)
        if self.kind == "token-classification":
            return M.tagging_metrics(gold, pred, self.labels)
        return M.regression_metrics(gold, pred)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        """The task a ``task.json`` (or a ``student.json``'s ``task``) describes; a ``ValueError``
        that says what is wrong when it was edited into something that is not a task."""
        if not isinstance(d, dict):
            raise ValueError(f"a task is a JSON object, not {type(d).__name__}")
        if d.get("kind") not in ("classification", "token-classification", "regression"):
            raise ValueError(f"unknown task kind {d.get('kind')!r}")
        labels, least = d.get("labels"), {"classification": 2, "token-classification": 1}.get(d["kind"], 0)
        if least and (not isinstance(labels, list) or len(labels) < least or not all(isinstance(x, str) for x in labels)
                      or len(set(labels)) != len(labels)):
            raise ValueError(f"a {d['kind']} task needs a list of at least {least} distinct label names, not {labels!r}")
        for key, kind in (("text_pair", bool), ("primary_metric", str), ("dataset", str), ("extra", dict)):
            if key in d and not isinstance(d[key], kind):
                raise ValueError(f"'{key}' must be a {kind.__name__}, not {d[key]!r}")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

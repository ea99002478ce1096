"""Objective and match specs as a config names them (pydantic only, no torch).

An objective entry names a registered loss, its weight, and that loss's own
parameters (validated against the objective's parameter schema when the run's
objectives are built, with the closest valid key named for a typo)::

    objectives:
      - {name: kl, temperature: 2.0, weight: 0.5}
      - {name: gold, weight: 0.5}
      - {name: hidden_mse, weight: 1.0, layers: uniform, embeddings: true}
      - {name: attention_kl, weight: 1.0, layers: last}

A match is the declarative, TextBrewer-style form of one layer pair::

    matches:
      - {teacher_layer: 6, student_layer: 2, feature: hidden, loss: mse, weight: 1.0, projection: auto}

Layers count from 1 (the first transformer layer); 0 is the embedding layer.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ObjectiveSpec(BaseModel):
    """One loss of a run: its registered ``name``, its ``weight`` and its own parameters (extra keys)."""

    model_config = ConfigDict(extra="allow")

    name: str
    """A registered objective (``kdexam.objectives.OBJECTIVES``), e.g. kl, gold, hidden_mse, attention_kl."""
    weight: float = 1.0
    """Weight of this loss in the sum; >= 0 (0 switches it off)."""

    @field_validator("weight", mode="before")
    @classmethod
    def _not_bool(cls, weight):
        if isinstance(weight, bool):  # (pydantic reads true as 1.0)
            raise ValueError(f"an objective's weight is a number, not {str(weight).lower()}")
        return weight

    @field_validator("weight")
    @classmethod
    def _nonnegative_weight(cls, weight: float) -> float:
        if not math.isfinite(weight) or weight < 0:
            raise ValueError("an objective's weight must be a finite number >= 0")
        return weight

    @property
    def params(self) -> dict:
        """The objective's own parameters (every key but name and weight)."""
        return dict(self.model_extra or {})


class MatchSpec(BaseModel):
    """One teacher layer matched to one student layer (declarative, as TextBrewer's intermediate matches)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    teacher_layer: int = Field(ge=0)
    """Teacher layer, 1 … L_T (0: the embedding layer)."""
    student_layer: int = Field(ge=0)
    """Student layer, 1 … L_S (0: the embedding layer)."""
    feature: Literal["hidden", "cls", "attention", "attention_scores", "value_relation", "relations"] = "hidden"
    """What is compared: hidden states, normalised [CLS] states (PKD), attention probabilities,
    pre-softmax attention scores, MiniLM value relations, MiniLMv2 relations."""
    loss: Literal["mse", "cosine", "kl"] = "mse"
    """How: mse (hidden, cls, attention_scores), cosine (hidden), kl (attention, value_relation, relations)."""
    weight: float = Field(default=1.0, ge=0)
    projection: Literal["auto", "linear", "none"] = "auto"
    """Learned linear map from the student's width to the teacher's: auto adds one when widths differ."""
    teacher: str | None = None
    """The ensemble member this match reads (several teachers; one teacher: leave empty)."""

    @field_validator("teacher_layer", "student_layer", "weight", mode="before")
    @classmethod
    def _not_bool(cls, value):
        if isinstance(value, bool):  # (pydantic reads true as 1)
            raise ValueError(f"a number is needed, not {str(value).lower()}")
        return value

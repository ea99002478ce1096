"""Named distillation recipes (``--recipe NAME``): documented lists of stages (pydantic only, no torch).

- ``xtremedistil`` (Mukherjee & Awadallah 2020, "XtremeDistil: Multi-stage Distillation for
  Massive Multilingual Models"): for BiLSTM, CNN and static students.

  1. ``representation``: the student's sentence vector (tagging: its token states, per word)
     learns the teacher's last-layer [CLS] state (tagging: token states) through a learned
     projection, MSE, on the transfer set; every parameter trains;
  2. ``logits-head``, ``logits-top2``, ``logits``: the teacher's logits (KL at T = 2;
     regression: MSE to the teacher's prediction) on the transfer set, with gradual
     unfreezing from the top: the head alone, then the top two layer groups, then all. The
     authors' code (MSR-LIT/XtremeDistil) regresses the logits with MSE here; kdexam uses its
     default logit loss instead (``stages:`` with ``mse`` objectives gives the paper's);
  3. ``gold``: cross-entropy (regression: MSE) on the labelled examples only.

  Each stage trains for the run's epochs with its early stopping.

Without a recipe (and without ``stages``) a run is one stage with the default objectives:
KL at T = 2 and gold cross-entropy, 0.5 each (regression: MSE to the teacher and to the gold
value). That is the literature's best simple recipe for every student family here: Tang et
al. (2019) for BiLSTM (and CNN) students, which mixes the teacher's logits with the gold
labels in one stage, and Hinton et al. (2015) for the rest; XtremeDistil's staged recipe is
the one to try when a large unlabelled transfer set is at hand, and whether it helps on our
data is measured in ``docs/studies/rnn-representation.md`` when that study exists.
"""

from __future__ import annotations

from kdexam.config.objectives import ObjectiveSpec

RECIPES = ("xtremedistil",)
"""The names ``--recipe`` accepts."""


def recipe_stages(name: str, task_kind: str) -> list:
    """The stages (:class:`~kdexam.config.StageConfig`) of recipe ``name`` for a task kind."""
    from kdexam.config.runs import StageConfig

    if name != "xtremedistil":
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    regression = task_kind == "regression"
    logits = [ObjectiveSpec(name="regression_mse")] if regression else [ObjectiveSpec(name="kl", temperature=2.0)]
    return [
        StageConfig(name="representation", objectives=[ObjectiveSpec(name="representation")], data="transfer"),
        StageConfig(name="logits-head", objectives=logits, data="transfer", unfreeze=1),
        StageConfig(name="logits-top2", objectives=logits, data="transfer", unfreeze=2),
        StageConfig(name="logits", objectives=logits, data="transfer"),
        StageConfig(name="gold", objectives=[ObjectiveSpec(name="gold")], data="gold"),
    ]

"""Which teacher layer each student layer learns from.

Layers count from 1 (the output of transformer layer K, as Hugging Face's
``hidden_states[K]``); 0 is the embedding layer. With T teacher layers and S student
layers, a rule gives the pairs ``(teacher_layer, student_layer)``:

=========  ==========================================  ======================================
rule       pairs                                        source
=========  ==========================================  ======================================
uniform    i ↔ i·⌊T/S⌋, i = 1 … S                       TinyBERT (Jiao et al. 2020): g(m) = m·T/S
skip       i ↔ i·⌊T/S⌋, i = 1 … S−1                     PKD-Skip (Sun et al. 2019); the last
                                                        student layer is left to the logit loss
first      i ↔ i, i = 1 … S                             the teacher's bottom layers
last       i ↔ T−S+i, i = 1 … S                         the teacher's top layers (PKD-Last)
final      S ↔ T only                                   MiniLM (Wang et al. 2020), MiniLMv2
list       ``[[teacher, student], …]`` as given        any explicit mapping
=========  ==========================================  ======================================

``uniform`` is TinyBERT's "(i+1)·⌊T/S⌋ − 1" in 0-based terms: for T = 12, S = 4 it gives
3, 6, 9, 12; for T = 12, S = 5 it gives 2, 4, 6, 8, 10 (⌊12/5⌋ = 2, so the top teacher
layers are not used). ``embeddings=True`` puts the embedding pair (0, 0) first.
"""

from __future__ import annotations

import difflib

from kdexam.errors import KdexamError

LAYER_RULES: tuple[str, ...] = ("uniform", "skip", "first", "last", "final")
"""The named layer-mapping rules (an explicit list of pairs is the other choice)."""


def unknown_rule_message(rule) -> str:
    close = difflib.get_close_matches(str(rule), LAYER_RULES, n=1, cutoff=0.0)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return (f"unknown layer rule '{rule}'{hint}; choose one of {', '.join(LAYER_RULES)}, or a list of "
            "[teacher_layer, student_layer] pairs")


def layer_pairs(rule, teacher_layers: int, student_layers: int, embeddings: bool = False) -> list[tuple[int, int]]:
    """The ``(teacher_layer, student_layer)`` pairs of ``rule`` (1-based; 0 = embeddings).

    Args:
        rule: ``uniform``, ``skip``, ``first``, ``last``, ``final``, or a list of
            ``[teacher_layer, student_layer]`` pairs.
        teacher_layers: T, the teacher's number of transformer layers.
        student_layers: S, the student's.
        embeddings: put the embedding-layer pair (0, 0) first.

    Raises:
        KdexamError (one sentence): an unknown rule (naming the closest), a student
        deeper than the teacher for uniform / skip / first / last, a pair out of range,
        ``skip`` with a one-layer student, an empty result.

    Example:

        >>> layer_pairs("uniform", 12, 4)
        [(3, 1), (6, 2), (9, 3), (12, 4)]
        >>> layer_pairs("skip", 12, 6)
        [(2, 1), (4, 2), (6, 3), (8, 4), (10, 5)]
        >>> layer_pairs("last", 12, 3, embeddings=True)
        [(0, 0), (10, 1), (11, 2), (12, 3)]
        >>> layer_pairs("final", 12, 4)
        [(12, 4)]
        >>> layer_pairs([[6, 2], [3, 1]], 12, 4)
        [(6, 2), (3, 1)]
    """
    T, S = int(teacher_layers or 0), int(student_layers or 0)
    if T < 1 or S < 1:
        raise KdexamError(f"Layer mapping needs models with transformer layers, got {T} teacher and {S} student layers.")
    if isinstance(rule, str):
        if rule not in LAYER_RULES:
            message = unknown_rule_message(rule)
            raise KdexamError(message[0].upper() + message[1:] + ".")
        if rule != "final" and S > T:
            raise KdexamError(f"Layer rule '{rule}' maps each student layer to a distinct teacher layer, but the "
                              f"student has {S} layers and the teacher only {T}; use final or a list of pairs.")
        step = T // S
        if rule == "uniform":
            pairs = [(i * step, i) for i in range(1, S + 1)]
        elif rule == "skip":
            if S == 1:
                raise KdexamError("Layer rule 'skip' leaves the last student layer to the logit loss, so a one-layer "
                                  "student has no layer to match; use uniform or final.")
            pairs = [(i * step, i) for i in range(1, S)]
        elif rule == "first":
            pairs = [(i, i) for i in range(1, S + 1)]
        elif rule == "last":
            pairs = [(T - S + i, i) for i in range(1, S + 1)]
        else:
            pairs = [(T, S)]
    elif isinstance(rule, (list, tuple)):
        pairs = []
        for pair in rule:
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
                raise KdexamError(f"Layer pair {pair!r} must be [teacher_layer, student_layer], two integers such as [6, 2].")
            t, s = int(pair[0]), int(pair[1])
            if not 0 <= t <= T:
                raise KdexamError(f"Layer pair [{t}, {s}] names teacher layer {t}, but the teacher has layers 0 to {T} "
                                  "(0 is the embedding layer).")
            if not 0 <= s <= S:
                raise KdexamError(f"Layer pair [{t}, {s}] names student layer {s}, but the student has layers 0 to {S} "
                                  "(0 is the embedding layer).")
            if (t, s) in pairs:
                raise KdexamError(f"Layer pair [{t}, {s}] is listed twice; list each pair once.")
            pairs.append((t, s))
    else:
        raise KdexamError(f"Layers must be a rule ({', '.join(LAYER_RULES)}) or a list of [teacher_layer, "
                          f"student_layer] pairs, not {rule!r}.")
    if embeddings and (0, 0) not in pairs:
        pairs = [(0, 0), *pairs]
    if not pairs:
        raise KdexamError("The layer mapping is empty; give at least one [teacher_layer, student_layer] pair.")
    return pairs


def check_rule(rule):
    """Pydantic validator of a ``layers`` parameter: a known rule name, or a list (checked against the shapes later)."""
    from pydantic_core import PydanticCustomError

    if isinstance(rule, str) and rule not in LAYER_RULES:
        raise PydanticCustomError("bad_layers", unknown_rule_message(rule))
    return rule

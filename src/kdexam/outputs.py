"""Named outputs: what teachers and students produce, in one vocabulary.

Both sides of a distillation produce a dict of named tensors, and an objective
asks for names (:attr:`kdexam.objectives.CompositeObjective.teacher_requires`):

==================  =====================  ===========================================================
name                shape                  what it is
==================  =====================  ===========================================================
``logits``          [B, C] / [B, L, C]     the task head's output ([B, 1] for regression)
``hidden.K``        [B, L, H]              hidden states after layer K (``hidden.0``: the embedding layer)
``cls.K``           [B, H]                 ``hidden.K`` at the first ([CLS]) position
``mean.K``          [B, H]                 ``hidden.K`` averaged over the real tokens (attention mask)
``word.K``          [B, L, H]              tagging: ``hidden.K`` at each word's first subword; a teacher stores
                                           it per word and lays it out at the *student's* first subwords, so
                                           students with another tokenizer can match it (NaN rows: words the
                                           teacher's truncation cut off)
``attention.K``     [B, heads, L, L]       layer K's attention probabilities (softmax)
``query.K``         [B, L, H]              layer K's self-attention query projection, heads not split
``key.K``           [B, L, H]              … key projection
``value.K``         [B, L, H]              … value projection
``embeddings``      [B, L, H]              alias of ``hidden.0``
``pooled``          [B, F]                 BiLSTM, CNN and static students: the sequence head's input
``states``          [B, L, F]              BiLSTM, CNN and static students: their last token-level features
==================  =====================  ===========================================================

Layers count from 1; ``K`` runs to the model's number of layers. Pre-softmax
attention scores are not a stored output: objectives that need them compute
``q·kᵀ/√d`` from ``query.K`` and ``key.K`` (TinyBERT's scores, without model-specific
relative position biases).

:func:`encoder_outputs` gets any set of these from a Hugging Face encoder in one
forward pass: hidden states and attentions through the model's own
``output_hidden_states`` / ``output_attentions``, query/key/value projections with
forward hooks on the ``nn.Linear`` modules of each layer's self-attention. A model
asked for attention maps in training mode stops dropping attention probabilities
(:func:`attention_dropout_off`): Hugging Face returns them after dropout.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from kdexam.errors import KdexamError

_NAME = re.compile(r"^(logits|embeddings|pooled|states|(hidden|cls|mean|word|attention|query|key|value)\.(\d+))$")
PROJECTION_NAMES = {"query": ("query", "q", "q_proj", "q_lin"), "key": ("key", "k", "k_proj", "k_lin"),
                    "value": ("value", "v", "v_proj", "v_lin")}


def model_shape(config):
    """Layers, width and heads of a Hugging Face config (:class:`kdexam.objectives.ModelShape`)."""
    from kdexam.objectives import ModelShape

    return ModelShape(num_layers=getattr(config, "num_hidden_layers", None), hidden_size=getattr(config, "hidden_size", None),
                      num_heads=getattr(config, "num_attention_heads", None))


def parse_name(name: str) -> tuple[str, int | None]:
    """``"hidden.3"`` → ``("hidden", 3)``; ``"logits"`` → ``("logits", None)``; ``embeddings`` → ``("hidden", 0)``."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"unknown named output {name!r}")
    if name == "embeddings":
        return "hidden", 0
    if m.group(2) is None:
        return name, None
    return m.group(2), int(m.group(3))


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The encoder's transformer layers (BERT, RoBERTa, MPNet, DistilBERT, … any ModuleList of layers)."""
    from kdexam.students.teacher_layers import find_layer_list

    return find_layer_list(model)[2]


def projection_modules(layer: nn.Module) -> dict[str, nn.Linear]:
    """The query, key and value ``nn.Linear`` modules of one transformer layer's self-attention."""
    found: dict[str, nn.Linear] = {}
    for name, module in layer.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        for kind, leaves in PROJECTION_NAMES.items():
            if leaf in leaves and isinstance(module, nn.Linear) and kind not in found:
                found[kind] = module
    return found


def attention_dropout_off(model: nn.Module) -> None:
    """No dropout on attention probabilities: Hugging Face models return them *after* dropout in
    training mode (zeros and 1/(1-p) scaling), which is not a distribution an objective can
    compare. A student whose attention maps are distilled therefore trains without it (the
    ``nn.Dropout`` beside each layer's query/key/value projections; hidden-state dropout stays)."""
    for layer in layer_list(model):
        query = projection_modules(layer).get("query")
        for parent in layer.modules():
            if query is not None and any(child is query for child in parent.children()):
                for child in parent.children():
                    if isinstance(child, nn.Dropout):
                        child.p = 0.0
    if hasattr(model.config, "attention_probs_dropout_prob"):
        model.config.attention_probs_dropout_prob = 0.0


def masked_mean(states: torch.Tensor, inputs: dict) -> torch.Tensor:
    """[B, L, H] → [B, H]: the mean over the positions the attention mask marks real (all without one)."""
    mask, states = inputs.get("attention_mask"), states.float()  # (summed in fp32 under autocast too)
    if mask is None:
        return states.mean(1)
    m = mask.to(states.dtype).unsqueeze(-1)
    return (states * m).sum(1) / m.sum(1).clamp(min=1.0)


def encoder_outputs(model: nn.Module, inputs: dict, names: set[str] | list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Run a Hugging Face model once on ``inputs`` and return the requested named outputs.

    ``model`` is an ``AutoModelFor…`` (then ``logits`` is available) or a bare ``AutoModel``
    encoder. Attention maps need eager attention; the model is switched to it on the first
    request (same results, somewhat slower)."""
    parsed = {n: parse_name(n) for n in names}
    kinds = {k for k, _ in parsed.values()}
    want_attn = "attention" in kinds
    if want_attn and getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")
    if want_attn and model.training:
        attention_dropout_off(model)
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    projections = [(k, i) for k, i in parsed.values() if k in PROJECTION_NAMES]
    if projections:
        layers = layer_list(model)
        for kind, k in projections:
            if not 1 <= k <= len(layers):
                raise KdexamError(f"Output '{kind}.{k}' asks for layer {k}, but the model has {len(layers)} layers.")
            modules = projection_modules(layers[k - 1])
            if kind not in modules:
                raise KdexamError(f"Cannot find the {kind} projection of layer {k} in this {type(model).__name__}; "
                                  "query/key/value objectives need self-attention with separate nn.Linear projections.")

            def keep(module, _args, output, name=f"{kind}.{k}"):
                captured[name] = output

            hooks.append(modules[kind].register_forward_hook(keep))
    try:
        result = model(**inputs, output_hidden_states=bool(kinds & {"hidden", "cls", "mean", "word"}), output_attentions=want_attn)
    finally:
        for h in hooks:
            h.remove()
    out: dict[str, torch.Tensor] = {}
    for name, (kind, k) in parsed.items():
        if kind == "logits":
            if getattr(result, "logits", None) is None:
                raise KdexamError("This model has no task head, so it gives no logits; use a fine-tuned teacher.")
            out[name] = result.logits
        elif kind in ("hidden", "cls", "mean", "word"):
            states = result.hidden_states
            if k >= len(states):
                raise KdexamError(f"Output '{name}' asks for layer {k}, but the model has {len(states) - 1} layers.")
            if kind == "cls":
                out[name] = states[k][:, 0]
            elif kind == "mean":
                out[name] = masked_mean(states[k], inputs)
            else:  # hidden.K; word.K too: the teacher keeps each word's first subword (teachers.teacher.stored_form)
                out[name] = states[k]
        elif kind == "attention":
            if k < 1 or k > len(result.attentions):
                raise KdexamError(f"Output '{name}' asks for layer {k}, but the model has {len(result.attentions)} layers.")
            out[name] = result.attentions[k - 1]
        else:
            out[name] = captured[name]
    return out

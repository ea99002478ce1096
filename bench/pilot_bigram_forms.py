"""Pilot (issue 11): cheaper forms of the static student's hashed bigram table.

``--ngram-buckets 65536`` adds a table ``G`` [B, E] (16.8M parameters at E = 256). Until 2026-12-04
AdamW updated it densely at every step, so training took 3–4× longer; these forms were tried first
(kdexam now updates the table lazily instead). Each is patched into kdexam's static student for one
``kdexam distill`` run:

- ``--form logits``: a table of per-bigram logits [``--buckets``, C], zero-initialised, averaged over a
  text's positions like the token vectors and added to the head's output, trained at ``--lr-scale``
  times the run's learning rate (the ``lr_scale`` seam of ``make_optimizer``). With mean pooling and a
  linear head ``(W, b)`` this is the form ``kdexam export`` folds ``G`` into (``G Wᵀ``); here it is
  trained that way from the start (pass no ``--ngram-buckets``).
- ``--form low-dim``: kdexam's own table (pass ``--ngram-buckets B``), ``--dim`` r wide instead of E,
  added to the first r coordinates of the token vectors only (with the model2vec initialisation, the
  top principal components).
- ``--form dense``: kdexam's own table as it was trained before 2026-12-04, with dense gradients and
  AdamW (since then its gradient is sparse and the lazy SparseAdam steps it), for the comparison.

    python bench/pilot_bigram_forms.py --form logits --lr-scale 3 --buckets 65536 -- --teacher runs/teacher-ms \\
        --data movie-sentiment --student static --embedding-dim 256 --seed 42 --num-threads 1 --out runs/static/lb-s42
    python bench/pilot_bigram_forms.py --form low-dim --dim 64 -- --teacher runs/teacher-ms --data movie-sentiment \\
        --student static --embedding-dim 256 --ngram-buckets 65536 --seed 42 --num-threads 1 --out runs/static/ld-s42

Everything after ``--`` is passed to ``kdexam distill``. Results: docs/benchmarks.md ("The bigram
table's size, and cheaper forms of it").
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn

import kdexam.students.static as static
from kdexam.cli import main as kdexam_main


def patch_logits(buckets: int, lr_scale: float) -> None:
    init, forward = static.StaticStudent.__init__, static.StaticStudent.forward

    def patched_init(self, config, embedding_weight=None):
        init(self, config, embedding_weight)
        self.logit_bigram = nn.Embedding(buckets, config.num_labels)
        nn.init.zeros_(self.logit_bigram.weight)  # training starts from the token-only model
        self.logit_bigram.lr_scale = lr_scale

    def patched_forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False,
                        output_attentions=False):
        out = forward(self, input_ids, attention_mask, token_type_ids, output_hidden_states, output_attentions)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        rows = F.pad(self.logit_bigram(static.bigram_ids(input_ids, buckets)), (0, 0, 1, 0))
        out["logits"] = out["logits"] + static.masked_mean(rows, mask.bool())
        return out

    static.StaticStudent.__init__, static.StaticStudent.forward = patched_init, patched_forward


def patch_low_dim(dim: int) -> None:
    init, token_vectors = static.StaticStudent.__init__, static.StaticStudent.token_vectors

    def patched_init(self, config, embedding_weight=None):
        init(self, config, embedding_weight)
        if self.bigram is not None:
            self.bigram = nn.Embedding(config.ngram_buckets, dim)
            nn.init.zeros_(self.bigram.weight)
            self.bigram.lr_scale = config.ngram_lr_scale

    def patched_token_vectors(self, input_ids):
        bigram, self.bigram = self.bigram, None
        try:
            x = token_vectors(self, input_ids)  # the token vectors alone
        finally:
            self.bigram = bigram
        if bigram is None:
            return x
        rows = bigram(static.bigram_ids(input_ids, self.config.ngram_buckets))
        return x + F.pad(rows, (0, x.shape[-1] - dim, 1, 0))

    static.StaticStudent.__init__, static.StaticStudent.token_vectors = patched_init, patched_token_vectors


def patch_dense() -> None:
    init = static.StaticStudent.__init__

    def patched_init(self, config, embedding_weight=None):
        init(self, config, embedding_weight)
        if self.bigram is not None:
            self.bigram.sparse = False

    static.StaticStudent.__init__ = patched_init


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--form", choices=("logits", "low-dim", "dense"), required=True)
    ap.add_argument("--buckets", type=int, default=65536, help="logits: the table's buckets")
    ap.add_argument("--lr-scale", type=float, default=3.0, help="logits: the table's learning rate over the run's")
    ap.add_argument("--dim", type=int, default=64, help="low-dim: the table's width")
    ap.add_argument("rest", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    if a.form == "logits":
        patch_logits(a.buckets, a.lr_scale)
    elif a.form == "low-dim":
        patch_low_dim(a.dim)
    else:
        patch_dense()
    torch.set_num_threads(1)
    rest = a.rest[1:] if a.rest[:1] == ["--"] else a.rest
    sys.exit(kdexam_main(["distill", *rest]))


if __name__ == "__main__":
    main()

"""Pilot (not a kdexam feature): the static student's hashed bigram buckets initialised from the
teacher's in-context states instead of zeros (docs/benchmarks.md, issue 11's accuracy target).

For each bigram ``(a, b)`` of the training texts, position i of token b gets the correction that
turns b's static vector into the teacher's state of b after a, in the student's PCA space:
``G[h(a, b)] = mean over occurrences of s_b (h_i − v_b) U`` (``v_b`` the token's contextual
average, ``s_b`` its SIF weight, ``U`` the PCA that made the token table), so at initialisation the
mean-pooled student is a bag of left-context-aware token vectors. Buckets seen fewer than
``BIGRAM_MIN`` times stay zero. Runs ``kdexam distill`` with ``build_student`` wrapped:

    BIGRAM_INIT=1 [BIGRAM_MIN=3] python bench/pilot_bigram_init.py distill --teacher runs/teacher-ms \
        --data movie-sentiment --student static --embedding-dim 256 --embeddings contextual \
        --ngram-buckets 65536 --num-threads 1 --out runs/pilot-bigram
"""
import os
import sys

import torch
import kdexam.training.distill as D
from kdexam.students import embeddings as E
from kdexam.students.static import bigram_ids
from kdexam.cli import main

orig = D.build_student


def bigram_init(teacher, dim, texts, buckets, min_count):
    tokenizer, encoder = E.load_encoder(teacher, dim)
    vocab = int(encoder.get_input_embeddings().weight.shape[0])
    width = int(encoder.config.hidden_size)
    counts = E.token_counts(tokenizer, texts)
    strings = sorted(set(E.iter_training_strings(texts)), key=lambda x: (len(x), x))
    sums = torch.zeros(vocab, width, dtype=torch.float64)
    seen = torch.zeros(vocab, dtype=torch.float64)
    bsum = torch.zeros(buckets, width, dtype=torch.float64)
    bcount = torch.zeros(buckets, dtype=torch.float64)
    pairs_b, pairs_t = [], []
    specials = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    total = sum(counts.values())
    a = E.SIF_COEFFICIENT  # the student's own SIF weights, a / (a + p(t))
    s = torch.tensor([a / (a + counts.get(i, 0) / total) for i in range(vocab)], dtype=torch.float64)
    with torch.inference_mode():
        for k in range(0, len(strings), 64):
            enc = tokenizer(strings[k:k+64], padding=True, truncation=True, max_length=128, return_tensors="pt")
            ids, m = enc["input_ids"], enc["attention_mask"].bool()
            h = encoder(input_ids=ids, attention_mask=enc["attention_mask"]).last_hidden_state.to(torch.float64)
            keep = m & ~torch.isin(ids, specials)
            sums.index_add_(0, ids[keep], h[keep])
            seen.index_add_(0, ids[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
            b = bigram_ids(ids, buckets)  # the student's own hashing
            mm = m[:, 1:]
            bb, tt, hh = b[mm], ids[:, 1:][mm], h[:, 1:][mm]
            bsum.index_add_(0, bb, hh * s[tt].unsqueeze(1))
            bcount.index_add_(0, bb, torch.ones(len(bb), dtype=torch.float64))
            pairs_b.append(bb)
            pairs_t.append(tt)
        in_context = torch.nonzero(seen).flatten()
        means = sums[in_context] / seen[in_context].unsqueeze(1)
        alone = sorted((set(counts) | set(tokenizer.all_special_ids)) - set(in_context.tolist()))
        alone = [i for i in alone if 0 <= i < vocab]
        valone = E.single_token_vectors(encoder, tokenizer, alone, 512).to(torch.float64)
    ids_all = in_context.tolist() + alone
    V = torch.zeros(vocab, width, dtype=torch.float64)
    V[in_context] = means
    V[torch.tensor(alone, dtype=torch.long)] = valone
    order = sorted(ids_all)
    X = V[order]
    X = X - X.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(X, full_matrices=False)
    U = vh[:dim].T
    bb = torch.cat(pairs_b)
    tt = torch.cat(pairs_t)
    bsub = torch.zeros(buckets, width, dtype=torch.float64)
    bsub.index_add_(0, bb, V[tt] * s[tt].unsqueeze(1))
    G = ((bsum - bsub) / bcount.clamp(min=1).unsqueeze(1)) @ U
    G[bcount < min_count] = 0
    # the token rows this PCA gives, to check against the student's own init
    Erows = (X @ U) * s[order].unsqueeze(1)
    print(f"bigram init: {int((bcount >= min_count).sum())} buckets filled of {buckets}; |G| {G.norm(dim=1).mean():.4f}", file=sys.stderr)
    return G.to(torch.float32), torch.tensor(order), Erows.to(torch.float32)


def patched(spec, task, teacher_dir, train_texts=None, init_from=None):
    model, tok = orig(spec, task, teacher_dir, train_texts=train_texts, init_from=init_from)
    if os.environ.get("BIGRAM_INIT") and model.bigram is not None:
        G, order, Erows = bigram_init(teacher_dir, model.config.embedding_dim, train_texts, model.config.ngram_buckets,
                                      int(os.environ.get("BIGRAM_MIN", "1")))
        W = model.embeddings.word.weight.detach()
        rows = model.embeddings.id_map[order]
        print("token rows agree:", float((W[rows] - Erows).abs().max()), file=sys.stderr)
        with torch.no_grad():
            model.bigram.weight.copy_(G)
    return model, tok

if __name__ == "__main__":
    D.build_student = patched
    sys.exit(main(sys.argv[1:]))

"""Check: the BiLSTM student's unpacked two-way LSTM pass against the packed one, step by step (issue 16).

Trains the labels-only BiLSTM (``--objective gold``, as ``kdexam distill`` builds it) with the packed
path (the form the ONNX export uses) and, at every step, runs a twin holding the same weights, the
same batch and the same dropout draws through the unpacked path; reports per epoch the largest
difference in loss and in gradients (relative to each tensor's largest gradient), and for each step
whose gradients differ by more than 0.1 % how many max-pooling positions changed, and by how much
their values differed. One thread.

    python bench/bilstm_unpacked_check.py --teacher TEACHER --max-train 1000 --epochs 7
"""
import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/
import train_throughput as tt  # noqa: E402


def packed(on: bool) -> None:
    torch.onnx.is_in_onnx_export = (lambda: True) if on else (lambda: False)  # the BiLSTM packs under ONNX export


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=7)
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, loader, side, opt, sch, clip, _ = tt.setup(a.teacher, "bilstm", a.max_train, 32, objective="gold")
    twin = copy.deepcopy(model)
    for epoch in range(a.epochs):
        loader.batch_sampler.set_epoch(epoch)
        loss_diff, grad_diff = 0.0, 0.0
        for batch in loader:
            twin.load_state_dict(model.state_dict())
            rng = torch.get_rng_state()
            outs = []
            for m, is_packed in ((model, True), (twin, False)):
                torch.set_rng_state(rng)
                packed(is_packed)
                m.train()
                loss = m(batch, side(batch, "cpu"))[0]
                loss.backward()
                outs.append(loss.item())
            rel = max(((p.grad - q.grad).abs().max() / (p.grad.abs().max() + 1e-12)).item()
                      for p, q in zip(model.parameters(), twin.parameters()) if p.grad is not None)
            loss_diff, grad_diff = max(loss_diff, abs(outs[0] - outs[1])), max(grad_diff, rel)
            if rel > 1e-3:  # where do the gradients part? count the max-pooling positions that moved
                kw = {k: batch[k] for k in ("input_ids", "attention_mask")}
                states = []
                for is_packed in (True, False):
                    torch.set_rng_state(rng)
                    packed(is_packed)
                    s, mask = model.student.encode(**kw)
                    states.append(s[-1].detach().masked_fill(~mask[..., None], float("-inf")))
                at = [s.max(1).indices for s in states]
                moved = at[0] != at[1]
                gap = (states[0].max(1).values - states[0].gather(1, at[1][:, None]).squeeze(1))[moved].abs().max().item()
                print(f"  epoch {epoch + 1}: gradients differ by {rel:.1e} (relative); {int(moved.sum())} of {moved.numel()} "
                      f"max-pooling positions moved, between values {gap:.1e} apart")
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sch.step()
            opt.zero_grad()
            twin.zero_grad()
        print(f"epoch {epoch + 1}: largest loss difference {loss_diff:.1e}, largest relative gradient difference {grad_diff:.1e}", flush=True)
    packed(False)


if __name__ == "__main__":
    main()

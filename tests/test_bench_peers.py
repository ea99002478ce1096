"""The pure parts of bench/vs_textbrewer.py and bench/textbrewer_peer.py (no TextBrewer, no network):
ratios, verdicts, the table, the peer's copy of kdexam's batches and BiLSTM."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import textbrewer_peer
import vs_textbrewer


def row(student, system, seconds, acc, **kw):
    return {"student": student, "system": system, "seconds": seconds, "test_accuracy": acc, **kw}


def test_ratio_and_verdict():
    assert vs_textbrewer.ratio(30.0, 10.0) == 3.0
    assert vs_textbrewer.ratio(None, 10.0) is None and vs_textbrewer.ratio(5.0, 0) is None
    assert vs_textbrewer.verdict(3.0, 3.0) == "met"
    assert vs_textbrewer.verdict(2.9, 3.0) == "missed"
    assert vs_textbrewer.verdict(1.2, 1.15, at_most=True) == "missed"
    assert vs_textbrewer.verdict(1.1, 1.15, at_most=True) == "met"
    assert vs_textbrewer.verdict(None, 3.0) == "not measured"


def test_summary_ratios_use_kdexam_with_its_cache_fill_and_overhead_uses_train_time():
    rows = [row("bert-mini", "kdexam", 100.0, 0.80, seconds_without_cache_fill=80.0, train_seconds=70.0),
            row("bert-mini", "textbrewer-fixed", 400.0, 0.79),
            row("bert-mini", "textbrewer-bucketed", 160.0, 0.797),
            row("bert-mini", "kdexam-labels-only", 75.0, 0.78, train_seconds=65.0),
            row("bilstm", "kdexam", 20.0, 0.75, train_seconds=10.0),
            row("bilstm", "textbrewer-fixed", None, None, error="exit 1"),
            row("bilstm-192", "kdexam", 20.0, 0.75),
            row("bilstm-192", "textbrewer-fixed", 199.0, 0.74)]
    s = vs_textbrewer.summary(rows)
    r = s["ratios"]["bert-mini"]
    assert r["textbrewer-fixed"]["with_cache_fill"] == 4.0
    assert r["textbrewer-fixed"]["without_cache_fill"] == 5.0
    assert r["textbrewer-bucketed"]["accuracy_kdexam_minus_peer_points"] == pytest.approx(0.3)
    assert s["kd_overhead"] == {"bert-mini": pytest.approx(70 / 65)}
    t = s["targets"]
    assert t["bert-mini ≥3× TextBrewer as its examples"] == "met"
    assert t["bert-mini ≥1.7× TextBrewer on the same batches"] == "missed"
    assert t["bert-mini accuracy within 0.5 pt of TextBrewer on the same batches"] == "met"
    assert t["bilstm ≥10× TextBrewer as its examples"] == "not measured"
    assert t["bilstm-192 ≥10× TextBrewer as its examples"] == "missed"  # 9.95×
    assert t["KD overhead ≤1.15× (every student)"] == "met"
    on_gpu = vs_textbrewer.summary(rows, "cuda")  # the targets are CPU targets: a GPU run is not judged
    assert on_gpu["ratios"] == s["ratios"] and set(on_gpu["targets"].values()) == {"not judged on cuda"}
    text = vs_textbrewer.table(rows)
    assert "| bert-mini | textbrewer-fixed | 400 | – | 4.00× |" in text
    assert "| bert-mini | kdexam | 100 | 80 | 1 |" in text
    assert "failed: exit 1" in text


def test_kd_kwargs_spell_kdexams_settings():
    assert vs_textbrewer.kd_kwargs([]) == {"objective": ["kl:temperature=4"]}
    assert vs_textbrewer.kd_kwargs([[3, 1]])["match"] == ["teacher_layer=3,student_layer=1,feature=hidden,loss=mse"]
    assert vs_textbrewer.kd_kwargs([[3, 1]], labels_only=True) == {"objective": ["gold"]}


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="VmHWM is Linux's")
def test_a_peer_reports_its_own_peak_memory_not_its_parents(tmp_path):
    """The benchmark's driver holds the teacher (~780 MB) when it starts each child: ``ru_maxrss``
    carries that over ``fork``/``exec``, ``VmHWM`` does not."""
    import subprocess

    ballast = bytearray(400 * 2**20)  # this process: 400 MB more than the child will ever hold
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import textbrewer_peer; "
            "print(textbrewer_peer.peak_rss_mb())")
    child = float(subprocess.run([sys.executable, "-c", code, str(Path(textbrewer_peer.__file__).parent)],
                                 capture_output=True, text=True, check=True).stdout)
    assert child < 100  # a bare Python; ru_maxrss would have said > 400
    del ballast


def test_peer_bucket_sampler_is_kdexams():
    from kdexam.data.encode import LengthBucketSampler

    lengths = [(i * 37) % 50 + 1 for i in range(300)]
    ours = LengthBucketSampler(lengths, 8, shuffle=True, seed=5, bucket_mult=4)
    peer = textbrewer_peer.LengthBucketSampler(lengths, 8, seed=5, bucket_mult=4)
    for epoch in range(3):
        ours.set_epoch(epoch)
        assert list(peer) == list(ours)  # the peer advances its epoch on each pass
    assert len(peer) == len(ours)


def test_peer_bilstm_matches_kdexams_bilstm():
    from kdexam.students.bilstm import BiLSTMConfig, BiLSTMStudent

    torch.manual_seed(0)
    config = BiLSTMConfig(vocab_size=20, embedding_dim=6, num_labels=3, hidden_size=5, source_vocab_size=40)
    ours = BiLSTMStudent(config).eval()
    with torch.no_grad():
        ours.embeddings.id_map.copy_(torch.arange(40) % 20)
    peer = textbrewer_peer.peer_bilstm_class()(config.to_dict()).eval()
    peer.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 40, (4, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5, [1] * 1 + [0] * 6])
    torch.testing.assert_close(peer(input_ids=ids, attention_mask=mask)["logits"],
                               ours(input_ids=ids, attention_mask=mask)["logits"])


def test_the_lstm_arithmetic_count_is_the_matrix_products_an_lstm_does():
    """bench/lstm_arithmetic.py's FLOP count equals the products of a bidirectional LSTM written out
    step by step (checked against nn.LSTM's outputs), as torch's FLOP counter counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    import lstm_arithmetic

    torch.manual_seed(0)
    batch, length, width, hidden = 3, 4, 8, 5
    lstm = torch.nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
    x = torch.randn(batch, length, width)

    def by_hand():
        outs = []
        for suffix, steps in (("", range(length)), ("_reverse", reversed(range(length)))):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"weight_hh_l0{suffix}")
            bias = getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")
            h = c = torch.zeros(batch, hidden)
            out = [None] * length
            for t in steps:
                i, f, g, o = (torch.mm(x[:, t], w_ih.t()) + torch.mm(h, w_hh.t()) + bias).chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = out[t] = torch.sigmoid(o) * torch.tanh(c)
            outs.append(torch.stack(out, dim=1))
        return torch.cat(outs, dim=-1)

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        mine = by_hand()
    torch.testing.assert_close(mine, lstm(x)[0].detach())
    assert counter.get_total_flops() == lstm_arithmetic.lstm_forward_flops(batch, length, width, hidden) == 12480


def test_versions_of_a_source_tree_and_the_peers_evaluation_on_the_models_device():
    """kdexam run from src/ on PYTHONPATH (as on a lent GPU machine) has no installed version; the
    peers' accuracy moves each batch to the model's device (here the CPU, from tensors made elsewhere)."""
    import importlib.metadata as md

    assert vs_textbrewer.installed(md, "no-such-package-kdexam") is None
    assert vs_textbrewer.installed(md, "torch") == md.version("torch")

    class Echo(torch.nn.Module):  # its weight on the meta device: every batch must be moved there
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device="meta"))
            self.logits = iter([torch.tensor([[0.0, 1.0], [1.0, 0.0]])] * 2)

        def forward(self, input_ids, attention_mask):
            assert input_ids.device.type == "meta" and attention_mask.device.type == "meta"
            return {"logits": next(self.logits)}

    batches = [([0, 1], {"input_ids": torch.tensor([[1, 5], [0, 5]]), "attention_mask": torch.ones(2, 2)})]
    assert textbrewer_peer.accuracy(Echo(), batches, [1, 0]) == 1.0
    assert textbrewer_peer.accuracy(Echo(), batches, [1, 1]) == 0.5


def test_seed_pairs_intervals_are_the_t_intervals_of_the_paired_differences():
    import json

    import seed_pairs

    s = seed_pairs.paired_summary([0.0, 1.0, 2.0], margin=0.5)  # mean 1, sd 1, se 1/sqrt(3); t(0.95, 2) = 2.919986
    assert s["mean"] == 1.0 and s["sd"] == pytest.approx(1.0)
    assert s["ci90"] == pytest.approx([1 - 2.919986 / 3 ** 0.5, 1 + 2.919986 / 3 ** 0.5], abs=1e-5)
    assert s["ci95"] == pytest.approx([1 - 4.302653 / 3 ** 0.5, 1 + 4.302653 / 3 ** 0.5], abs=1e-5)
    assert not s["equivalence_shown"] and not s["difference_shown"] and s["seeds_for_margin"] is None  # |mean| > margin
    assert json.loads(json.dumps(s)) == s  # plain numbers and booleans, for --out
    tight = seed_pairs.paired_summary([0.1, -0.1] * 10, margin=0.5)
    assert tight["equivalence_shown"] and tight["ci90"][1] < 0.5 and tight["seeds_for_margin"] <= 20
    apart = seed_pairs.paired_summary([-2.0, -2.1] * 5, margin=0.5)
    assert apart["difference_shown"] and not apart["equivalence_shown"]


def test_seed_pairs_refuses_a_seed_with_two_different_results(tmp_path):
    import json

    import seed_pairs

    def run(name, seed, ours, peer):
        p = tmp_path / name
        p.write_text(json.dumps({"seed": seed, "rows": [{"student": "bilstm", "system": "kdexam", "test_accuracy": ours},
                                                        {"student": "bilstm", "system": "textbrewer-fixed", "test_accuracy": peer}]}))
        return p

    files = [run("a.json", 1, 0.70, 0.71), run("b.json", 2, 0.72, 0.70), run("c.json", 1, 0.70, 0.71)]
    assert seed_pairs.paired_accuracies(files, "bilstm", "textbrewer-fixed") == {1: (0.70, 0.71), 2: (0.72, 0.70)}
    assert seed_pairs.paired_accuracies(files, "bilstm", "textbrewer-bucketed") == {}  # no such peer in the files
    with pytest.raises(SystemExit, match="seed 1 gives"):
        seed_pairs.paired_accuracies(files + [run("d.json", 1, 0.69, 0.71)], "bilstm", "textbrewer-fixed")

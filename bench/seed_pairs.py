"""Accuracy over seeds: kdexam against a peer, paired by seed, from ``bench/vs_textbrewer.py`` JSON files.

Issue 16 asks for kdexam's speed *at equal quality* ("accuracy within 0.5 points"). One seed moves
a small student trained on 1,000 sentences by 1.5-2 points, so equality is a question about the
mean of paired differences (kdexam − peer, the same seed, the same initial student) over many
seeds. This reads the runs' JSON files, pairs ``kdexam`` with ``--peer`` for ``--student`` by the
file's ``seed`` (a seed found twice must give the same accuracies, else it is an error: two
teachers or two code versions were mixed), and prints, in accuracy points:

- the mean difference, its standard deviation over the seeds and the 95 % t interval of the mean
  (a difference is *shown* when this interval excludes 0);
- the 90 % t interval, which is the two one-sided tests (TOST, α = 0.05 each) for equivalence:
  equivalence within ``--margin`` points is *shown* when it lies inside ±margin (Schuirmann 1987);
- how many seeds the 90 % interval would need to fit inside ±margin if the mean and spread stayed.

    python bench/seed_pairs.py --student bert-mini --peer textbrewer-bucketed \
        bench/results/vs_textbrewer_2026-12-04_bert_mini_1.json bench/results/vs_textbrewer_2026-12-04_seeds_bert-mini_s*.json \
        --out bench/results/seed_pairs_bert-mini.json

No runs, seconds; needs SciPy (a dependency of scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

SCHUIRMANN_1987 = ("Schuirmann (1987), A comparison of the two one-sided tests procedure and the power approach for "
                   "assessing the equivalence of average bioavailability")


def paired_summary(diffs: list[float], margin: float) -> dict:
    """Mean, standard deviation (n − 1) and t intervals of paired differences; equivalence within
    ±``margin`` when the 90 % interval lies inside it (TOST at α = 0.05), a difference when the
    95 % interval excludes 0. ``seeds_for_margin``: the n whose 90 % half-width, at this spread,
    leaves the observed mean inside ±margin (``None`` when the mean itself is outside)."""
    from scipy import stats

    n = len(diffs)
    if n < 2:
        raise ValueError("paired_summary needs at least two seeds")
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    se = sd / math.sqrt(n)
    ci95 = float(stats.t.ppf(0.975, n - 1)) * se
    ci90 = float(stats.t.ppf(0.95, n - 1)) * se
    room = margin - abs(mean)
    need = None
    if room > 0:
        need = next(k for k in range(2, 10**7) if float(stats.t.ppf(0.95, k - 1)) * sd / math.sqrt(k) < room) if sd > 0 else 2
    return {"seeds": n, "mean": mean, "sd": sd, "ci95": [mean - ci95, mean + ci95], "ci90": [mean - ci90, mean + ci90],
            "difference_shown": not (mean - ci95 <= 0 <= mean + ci95),
            "equivalence_shown": -margin < mean - ci90 and mean + ci90 < margin, "margin": margin, "seeds_for_margin": need}


def paired_accuracies(files: list[Path], student: str, peer: str) -> dict[int, tuple[float, float]]:
    """{seed: (kdexam accuracy, peer accuracy)} from every file that ran both for ``student``."""
    pairs: dict[int, tuple[float, float]] = {}
    for f in files:
        d = json.loads(Path(f).read_text(encoding="utf-8"))
        acc = {r["system"]: r.get("test_accuracy") for r in d.get("rows", []) if r.get("student") == student}
        if acc.get("kdexam") is None or acc.get(peer) is None:
            continue
        seed, pair = int(d["seed"]), (acc["kdexam"], acc[peer])
        if seed in pairs and pairs[seed] != pair:
            raise SystemExit(f"seed {seed} gives {pairs[seed]} in one file and {pair} in {f}: not the same teacher or code")
        pairs[seed] = pair
    return dict(sorted(pairs.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--student", default="bert-mini")
    ap.add_argument("--peer", default="textbrewer-bucketed")
    ap.add_argument("--margin", type=float, default=0.5, help="equivalence margin, accuracy points")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    pairs = paired_accuracies(a.files, a.student, a.peer)
    if len(pairs) < 2:
        raise SystemExit(f"{len(pairs)} seed(s) with both kdexam and {a.peer} for {a.student}; need two or more")
    diffs = [100 * (k - p) for k, p in pairs.values()]
    s = paired_summary(diffs, a.margin)
    print(f"| seed | kdexam | {a.peer} | difference (points) |\n|---|---|---|---|")
    for (seed, (k, p)), d in zip(pairs.items(), diffs):
        print(f"| {seed} | {k:.3f} | {p:.3f} | {d:+.1f} |")
    mean_k = sum(k for k, _ in pairs.values()) / len(pairs)
    mean_p = sum(p for _, p in pairs.values()) / len(pairs)
    print(f"\n{s['seeds']} seeds: kdexam {mean_k:.4f}, {a.peer} {mean_p:.4f}; difference {s['mean']:+.2f} ± {s['sd']:.2f} points; "
          f"95 % interval {s['ci95'][0]:+.2f} to {s['ci95'][1]:+.2f} (a difference {'shown' if s['difference_shown'] else 'not shown'}); "
          f"90 % interval {s['ci90'][0]:+.2f} to {s['ci90'][1]:+.2f} (equivalence within ±{a.margin} "
          f"{'shown' if s['equivalence_shown'] else 'not shown'}; "
          + (f"about {s['seeds_for_margin']} seeds would show it at this mean and spread)" if s["seeds_for_margin"]
             else "the mean itself is outside the margin)"))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"benchmark": "seed_pairs", "student": a.student, "peer": a.peer,
                                     "files": [str(f) for f in a.files], "pairs": {str(k): v for k, v in pairs.items()},
                                     "kdexam_mean": mean_k, "peer_mean": mean_p, **s, "citation": SCHUIRMANN_1987},
                                    indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

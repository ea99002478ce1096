"""Pareto plots (matplotlib PNG, one figure per dataset): quality against end-to-end CPU latency
at batch 1 and against model file size, one point per student (error bars: std over seeds),
the teacher marked with a star, the Pareto front drawn as a step line."""

from __future__ import annotations

from pathlib import Path

from kdexam.exam.grid import dataset_slug, dataset_slugs


def _front(points: list[tuple[float, float]], greater_is_better: bool) -> list[tuple[float, float]]:
    """The non-dominated points, cheapest first (each one better than every cheaper one)."""
    out: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1] if greater_is_better else p[1])):
        if not out or (y > out[-1][1] if greater_is_better else y < out[-1][1]):
            out.append((x, y))
    return out


def plot_dataset(name: str, ds: dict, path: Path) -> Path | None:
    """Write ``path`` (PNG) for one dataset of :func:`kdexam.exam.leaderboard.summarise`; ``None``
    when no student has both a score and a cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    students = [e for e in ds["students"] if e.get("score") is not None]
    if not any(e.get("e2e_ms_b1") for e in students):
        return None
    metric = students[0]["primary_metric"]
    gib = students[0]["greater_is_better"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for ax, cost, xlabel in ((axes[0], "e2e_ms_b1", "end-to-end CPU latency at batch 1, p50 (ms, log scale)"),
                             (axes[1], "size_mb", "model file size (MB, log scale)")):
        pts = [e for e in students if e.get(cost)]
        for e in pts:
            label = e["student"] + ("" if e["recipe"] == "kd" else f" [{e['recipe']}]") + ("" if e["transfer"] == "none" else f" +{e['transfer']}")
            ax.errorbar(e[cost], e["score"], yerr=e.get("score_std") or None, xerr=e.get(cost + "_std") or None, fmt="o",
                        capsize=3, label=label)
            ax.annotate(label, (e[cost], e["score"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        front = _front([(e[cost], e["score"]) for e in pts], gib)
        if len(front) > 1:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", linestyle="--", linewidth=1,
                    label="Pareto front")
        for t in ds["teachers"]:
            x = t.get(cost)
            if x and t.get("score") is not None:
                ax.scatter([x], [t["score"]], marker="*", s=220, color="black", zorder=5, label=f"teacher {t['teacher']}")
                ax.annotate(f"teacher {t['teacher']}", (x, t["score"]), textcoords="offset points", xytext=(6, -12), fontsize=8)
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.08)  # room for the labels on the right
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{metric} (test)")
        ax.grid(True, which="both", alpha=0.3)
    short = dataset_slug(name)
    axes[0].set_title(f"{short}: quality against latency")
    axes[1].set_title(f"{short}: quality against size")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_all(summary: dict, out: Path) -> dict[str, Path]:
    """One PNG per dataset under ``out/plots``; returns ``{dataset: path}``."""
    made, slugs = {}, dataset_slugs(summary["datasets"])
    for name, ds in summary["datasets"].items():
        p = plot_dataset(name, ds, out / "plots" / (slugs[name] + ".png"))
        if p:
            made[name] = p
    return made

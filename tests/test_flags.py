"""Flags of ``kdexam teacher`` and ``kdexam distill``: declared once (``kdexam.api.TEACHER_FLAGS``,
``DISTILL_FLAGS``), the same through the CLI and the api; ``--set``; file < --set < flags;
``--objective`` / ``--match`` / ``--layers`` parsing. No model is trained: the CLI tests stop at the
resolved config."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from kdexam import api
from kdexam.cli import main
from kdexam.errors import KdexamError

# One sample per flag: (command-line arguments, api value, expected config value). A flag added to a
# table without a sample here fails test_every_flag_has_a_sample.
SAMPLES = {
    "data": (["--data", "d.csv"], "d.csv", "d.csv"),
    "task": (["--task", "regression"], "regression", "regression"),
    "text_column": (["--text-column", "sentence"], "sentence", "sentence"),
    "text_pair_column": (["--text-pair-column", "s2"], "s2", "s2"),
    "label_column": (["--label-column", "polarity"], "polarity", "polarity"),
    "max_train": (["--max-train", "7"], 7, 7),
    "max_eval": (["--max-eval", "5"], 5, 5),
    "max_length": (["--max-length", "64"], 64, 64),
    "model": (["--model", "some/model"], "some/model", "some/model"),
    "out": (["--out", "runs/x"], "runs/x", "runs/x"),
    "seed": (["--seed", "7"], 7, 7),
    "epochs": (["--epochs", "4"], 4, 4),
    "batch_size": (["--batch-size", "8"], 8, 8),
    "learning_rate": (["--lr", "0.002"], 0.002, 0.002),
    "patience": (["--patience", "5"], 5, 5),
    "evals_per_epoch": (["--evals-per-epoch", "2"], 2, 2),
    "num_threads": (["--num-threads", "1"], 1, 1),
    "ema_decay": (["--ema", "0.999"], 0.999, 0.999),
    "mixed_precision": (["--mixed-precision", "bf16"], "bf16", "bf16"),
    "teacher": (["--teacher", "runs/t", "--teacher", "runs/u"], ["runs/t", "runs/u"], ["runs/t", "runs/u"]),
    "combine": (["--combine", "logits"], "logits", "logits"),
    "weighting": (["--weighting", "validation"], "validation", "validation"),
    "teacher_weights": (["--teacher-weights", "0.7,0.3"], "0.7,0.3", [0.7, 0.3]),
    "student": (["--student", "cnn"], "cnn", "cnn"),
    "embeddings": (["--embeddings", "random"], "random", "random"),
    "vectors_file": (["--vectors-file", "v.txt"], "v.txt", "v.txt"),
    "embedding_dim": (["--embedding-dim", "16"], 16, 16),
    "hidden_size": (["--hidden-size", "32"], 32, 32),
    "pooling": (["--pooling", "mean"], "mean", "mean"),
    "pair_mode": (["--pair-mode", "siamese"], "siamese", "siamese"),
    "crf": (["--crf"], True, True),
    "min_token_count": (["--min-token-count", "2"], 2, 2),
    "token_weights": (["--token-weights"], True, True),
    "ngram_buckets": (["--ngram-buckets", "1024"], 1024, 1024),
    "layers": (["--layers", "1,3"], "1,3", [1, 3]),
    "general": (["--general"], True, True),
    "trust_remote_code": (["--trust-remote-code"], True, True),
    "recipe": (["--recipe", "xtremedistil"], "xtremedistil", "xtremedistil"),
    "init_from": (["--init-from", "enc"], "enc", "enc"),
    "objective": (["--objective", "kl:temperature=4,weight=0.5"], ["kl:temperature=4,weight=0.5"],
                  [{"name": "kl", "temperature": 4, "weight": 0.5}]),
    "match": (["--match", "teacher_layer=6,student_layer=2,loss=cosine"], ["teacher_layer=6,student_layer=2,loss=cosine"],
              [{"teacher_layer": 6, "student_layer": 2, "loss": "cosine", "feature": "hidden"}]),
    "cache_teacher": (["--online-teacher"], False, False),
    "cache_budget_gb": (["--cache-budget-gb", "2.5"], 2.5, 2.5),
    "teacher_precision": (["--teacher-precision", "bf16"], "bf16", "bf16"),
    "unlabelled": (["--unlabelled", "movie-dialog", "--unlabelled", "u.txt"], ["movie-dialog", "u.txt"], ["movie-dialog", "u.txt"]),
    "unlabelled_column": (["--unlabelled-column", "line"], "line", "line"),
    "max_unlabelled": (["--max-unlabelled", "500"], 500, 500),
    "augment": (["--augment", "mask,neighbours,mlm,ngram"], "mask,neighbours,mlm,ngram", ["mask", "neighbours", "mlm", "ngram"]),
    "augment_n": (["--augment-n", "5"], 5, 5),
    "augment_p": (["--augment-p", "0.2"], 0.2, 0.2),
    "augment_vectors": (["--augment-vectors", "glove.txt"], "glove.txt", "glove.txt"),
    "augment_mlm_model": (["--augment-mlm-model", "mlm"], "mlm", "mlm"),
    "min_confidence": (["--min-confidence", "0.9"], 0.9, 0.9),
}

TABLES = {"teacher": (api.TEACHER_FLAGS, api.teacher_config), "distill": (api.DISTILL_FLAGS, api.distill_config)}
CASES = [(cmd, name) for cmd, (table, _) in TABLES.items() for name in table]


def get(cfg, dotted: str):
    value = cfg
    for key in dotted.split("."):
        value = getattr(value, key)
    if isinstance(value, list):
        return [v.model_dump() if isinstance(v, BaseModel) else v for v in value]
    return value


def same(actual, expected) -> bool:
    """Equal, where an expected dict only needs its own keys to match (the config fills defaults)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(same(actual.get(k), v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(same, actual, expected))
    return actual == expected


class Resolved(Exception):
    """Raised instead of training, once the CLI has resolved its config."""


@pytest.fixture()
def captured(monkeypatch):
    """Run the CLI up to its resolved config: the training functions are replaced by a recorder."""
    seen = {}

    def record(cfg, resume=False, overwrite=False):
        seen["cfg"], seen["resume"], seen["overwrite"] = cfg, resume, overwrite
        raise Resolved

    monkeypatch.setattr(api, "finetune_teacher", record)
    monkeypatch.setattr(api, "distill", record)
    return seen


def cli_config(captured, args):
    captured.clear()
    with pytest.raises(Resolved):
        main([str(a) for a in args])
    return captured["cfg"]


def cli_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    text = " ".join(err[err.index("error:"):].split())
    assert text[-1] in ".?)", text
    return text


def test_every_flag_has_a_sample():
    assert set(api.TEACHER_FLAGS) | set(api.DISTILL_FLAGS) == set(SAMPLES)


def test_distill_takes_every_teacher_flag_but_model():
    assert set(api.TEACHER_FLAGS) - {"model"} <= set(api.DISTILL_FLAGS)
    for name in set(api.TEACHER_FLAGS) - {"model"}:
        assert api.DISTILL_FLAGS[name].path == api.TEACHER_FLAGS[name].path


NEEDS = {"unlabelled_column": "unlabelled", "max_unlabelled": "unlabelled", "augment_n": "augment", "augment_p": "augment",
         "augment_vectors": "augment", "augment_mlm_model": "augment", "min_confidence": "unlabelled"}
"""Flags that do something only with another, given with it (alone they are refused)."""


@pytest.mark.parametrize("command,name", CASES)
def test_flag_maps_to_its_config_path_through_the_api(command, name):
    table, resolve = TABLES[command]
    _, value, expected = SAMPLES[name]
    partner = {NEEDS[name]: SAMPLES[NEEDS[name]][1]} if name in NEEDS else {}
    cfg = resolve(**{name: value}, **partner)
    assert same(get(cfg, table[name].path), expected)


@pytest.mark.parametrize("command,name", CASES)
def test_flag_maps_to_its_config_path_through_the_cli(command, name, captured):
    table, _ = TABLES[command]
    args, _, expected = SAMPLES[name]
    partner = SAMPLES[NEEDS[name]][0] if name in NEEDS else []
    cfg = cli_config(captured, [command, *args, *partner])
    assert same(get(cfg, table[name].path), expected)


def test_all_distill_flags_at_once(captured):
    """Every flag but --general (which refuses the transfer flags, a recipe and several teachers),
    --weighting (--teacher-weights imply fixed) and --recipe (which brings its own objectives and
    refuses --objective and --match), then --recipe alone, then --general without them."""
    apart = ("general", "weighting", "recipe")
    args = [a for name in api.DISTILL_FLAGS if name not in apart for a in SAMPLES[name][0]] + ["--resume"]
    cfg = cli_config(captured, ["distill", *args])
    assert captured["resume"] is True
    for name, flag in api.DISTILL_FLAGS.items():
        if name not in apart:
            assert same(get(cfg, flag.path), SAMPLES[name][2]), name
    assert cfg.ensemble.weighting == "fixed"
    assert cli_config(captured, ["distill", *SAMPLES["recipe"][0]]).recipe == SAMPLES["recipe"][2]
    transfer = {n for n, f in api.DISTILL_FLAGS.items() if f.path.startswith(("transfer.", "ensemble.")) or n in ("recipe", "teacher")}
    args = [a for name in api.DISTILL_FLAGS if name not in transfer for a in SAMPLES[name][0]]
    assert cli_config(captured, ["distill", *args]).general is True


def test_flags_not_given_leave_the_defaults(captured):
    assert cli_config(captured, ["distill"]) == api.distill_config()
    assert cli_config(captured, ["teacher"]) == api.teacher_config()


def test_cache_teacher_switch_and_bool_flags(captured):
    assert cli_config(captured, ["distill", "--cache-teacher"]).cache_teacher is True
    assert cli_config(captured, ["distill", "--online-teacher"]).cache_teacher is False
    cfg = cli_config(captured, ["distill"])
    assert (cfg.cache_teacher, cfg.general, cfg.student.crf) == (True, False, False)


def test_a_switch_has_its_negative_to_undo_a_config_file(captured, tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("general: true\ntrust_remote_code: true\nstudent:\n  kind: bilstm\n  crf: true\n")
    assert cli_config(captured, ["distill", "-c", f]).student.crf is True
    cfg = cli_config(captured, ["distill", "-c", f, "--no-crf", "--no-general", "--no-trust-remote-code"])
    assert (cfg.student.crf, cfg.general, cfg.trust_remote_code) == (False, False, False)
    f.write_text("trust_remote_code: true\n")
    assert cli_config(captured, ["teacher", "-c", f, "--no-trust-remote-code"]).trust_remote_code is False


def test_unknown_api_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="model"):
        api.distill_config(model="x")
    with pytest.raises(TypeError, match="layers"):
        api.teacher_config(layers="upper")


def test_distill_reads_the_teacher_data_columns(captured, tmp_path):
    """The motivating case: a CSV with columns sentence,polarity, no YAML file."""
    cfg = cli_config(captured, ["distill", "--teacher", tmp_path / "t", "--data", tmp_path / "d.csv",
                                "--text-column", "sentence", "--label-column", "polarity", "--out", tmp_path / "s"])
    assert (cfg.data.name, cfg.data.text_column, cfg.data.label_column) == (str(tmp_path / "d.csv"), "sentence", "polarity")


# --- --set ------------------------------------------------------------------------------------

def test_set_nested_list_and_yaml_values():
    cfg = api.distill_config(set=["train.warmup_ratio=0.2", "student.layers=[0,5]",
                                  "objectives=[{name: kl, temperature: 4}]", "data.name=a=b.csv",
                                  "train.scheduler = cosine", "student.freeze_embeddings=true"])
    assert cfg.train.warmup_ratio == 0.2 and cfg.student.layers == [0, 5]
    assert [o.model_dump() for o in cfg.objectives] == [{"name": "kl", "weight": 1.0, "temperature": 4}]
    assert cfg.data.name == "a=b.csv" and cfg.train.scheduler == "cosine" and cfg.student.freeze_embeddings is True


def test_set_on_the_command_line(captured):
    cfg = cli_config(captured, ["distill", "--set", "train.warmup_ratio=0.2", "--set", "student.layers=[0,5]",
                                "--set", "objectives=[{name: kl, temperature: 4}]"])
    assert cfg.train.warmup_ratio == 0.2 and cfg.student.layers == [0, 5]
    assert cfg.objectives[0].name == "kl" and cfg.objectives[0].params == {"temperature": 4}
    cfg = cli_config(captured, ["teacher", "--set", "train.scheduler=constant", "--set", "data.token_column=1"])
    assert cfg.train.scheduler == "constant" and cfg.data.token_column == 1


def test_set_as_a_mapping_and_null(tmp_path):
    cfg = api.teacher_config(set={"train.warmup_ratio": 0.3, "data.max_eval": 9})
    assert cfg.train.warmup_ratio == 0.3 and cfg.data.max_eval == 9
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  text_pair_column: second\n  name: d.csv\n")
    cfg = api.teacher_config(f, set=["data.text_pair_column=null"])
    assert cfg.data.text_pair_column is None and cfg.data.name == "d.csv"


def test_later_set_wins_and_a_mapping_replaces_the_section():
    cfg = api.distill_config(set=["train.epochs=3", "train.epochs=4"])
    assert cfg.train.epochs == 4
    cfg = api.distill_config(set=["train.batch_size=8", "train={epochs: 2}", "train.patience=1"])
    assert (cfg.train.epochs, cfg.train.patience, cfg.train.batch_size) == (2, 1, 32)


@pytest.mark.parametrize("item,match", [
    ("train.warmup_ratio", "not of the form key=value"),
    ("=3", "not of the form key=value"),
    ("train..epochs=3", "not of the form key=value"),
    ("student.layers=[0,5", "not a valid YAML value"),
    (["train.epochs=3", "train.epochs.x=1"], "'train.epochs.x' goes inside 'train.epochs', which is not a mapping"),
    ("train.epochs.x=1", "Config value 'train.epochs' is invalid"),
    ("train.warmup_ration=0.2", "did you mean 'train.warmup_ratio'"),
    ("studnt.kind=cnn", "did you mean 'student'"),
    ("train.epochs=many", "train.epochs"),
])
def test_bad_set_exits_2_with_a_sentence(item, match, capsys):
    items = item if isinstance(item, list) else [item]
    assert match in cli_error(["distill", *(a for i in items for a in ("--set", i))], capsys)


def test_bad_set_through_the_api():
    with pytest.raises(KdexamError, match="key=value"):
        api.teacher_config(set=["seed"])
    with pytest.raises(KdexamError, match="did you mean 'train.warmup_ratio'"):
        api.teacher_config(set=["train.warmup_ration=0.2"])


# --- precedence: file < --set < flags -----------------------------------------------------------

@pytest.fixture()
def config_file(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("seed: 1\ndata:\n  text_column: file_text\n  label_column: file_label\n"
                 "train:\n  epochs: 5\n  batch_size: 4\n")
    return f


def test_precedence_through_the_api(config_file):
    for resolve in (api.teacher_config, api.distill_config):
        cfg = resolve(config_file, set=["train.epochs=6", "data.text_column=set_text", "seed=2"], epochs=7, seed=3)
        assert cfg.train.epochs == 7 and cfg.seed == 3            # flag over --set over file
        assert cfg.data.text_column == "set_text"                  # --set over file
        assert cfg.data.label_column == "file_label" and cfg.train.batch_size == 4  # file over defaults


def test_precedence_on_the_command_line(config_file, captured):
    for command in ("teacher", "distill"):
        # the order on the line does not matter: flags win over --set wherever they stand
        cfg = cli_config(captured, [command, "--epochs", "7", "-c", config_file, "--set", "train.epochs=6",
                                    "--set", "data.text_column=set_text", "--text-column", "flag_text",
                                    "--set", "data.label_column=set_label"])
        assert cfg.train.epochs == 7 and cfg.data.text_column == "flag_text"
        assert cfg.data.label_column == "set_label" and cfg.seed == 1 and cfg.train.batch_size == 4


def test_a_saved_config_rerun_with_another_student_takes_that_students_default_rate(tmp_path):
    """A run's config.yaml records every default, the learning rate its student's default gave among
    them: rerun with --student cnn, a bert-mini's 1e-4 was kept for the CNN (whose default is 1e-3)."""
    from kdexam.config import save_config

    saved = tmp_path / "config.yaml"
    save_config(api.distill_config(student="bert-mini"), saved)
    assert api.distill_config(saved).train.learning_rate == 1e-4
    assert api.distill_config(saved, student="cnn").train.learning_rate == 1e-3  # the CNN's default
    assert api.distill_config(saved, set=["student.kind=cnn"]).train.learning_rate == 1e-3
    assert api.distill_config(saved, student="cnn", learning_rate=3e-4).train.learning_rate == 3e-4  # given again: kept
    save_config(api.distill_config(student="bert-mini", learning_rate=2e-4), saved)  # a rate set on purpose: kept
    assert api.distill_config(saved, student="cnn").train.learning_rate == 2e-4


def test_a_flag_wins_over_a_set_section():
    cfg = api.distill_config(set=["student={kind: cnn, hidden_size: 10}"], layers="upper", student="bilstm")
    assert (cfg.student.kind, cfg.student.hidden_size, cfg.student.layers) == ("bilstm", 10, "upper")
    cfg = api.distill_config(set=["objectives=[{name: gold}]"], objective=["kl"])
    assert [o.name for o in cfg.objectives] == ["kl"]


# --- --objective, --match, --layers ------------------------------------------------------------

def test_objective_specs():
    assert api.parse_objective("kl:temperature=2,weight=0.5") == {"name": "kl", "temperature": 2, "weight": 0.5}
    assert api.parse_objective("gold:weight=0.5") == {"name": "gold", "weight": 0.5}
    assert api.parse_objective("gold") == {"name": "gold"}
    assert api.parse_objective("hidden_mse:layers=uniform,weight=1,embeddings=true") == {
        "name": "hidden_mse", "layers": "uniform", "weight": 1, "embeddings": True}
    assert api.parse_objective("hidden_mse:layers=[[6,2],[3,1]],weight=1") == {
        "name": "hidden_mse", "layers": [[6, 2], [3, 1]], "weight": 1}
    assert api.parse_objective("x:a={p: [1, 2], q: 3},b='c,d',c=\"e,f\"") == {
        "name": "x", "a": {"p": [1, 2], "q": 3}, "b": "c,d", "c": "e,f"}
    assert api.parse_objective({"name": "kl"}) == {"name": "kl"}


def test_objectives_on_the_command_line(captured):
    cfg = cli_config(captured, ["distill", "--objective", "kl:temperature=2,weight=0.5", "--objective", "gold:weight=0.5",
                                "--objective", "hidden_mse:layers=[[6,2],[3,1]],weight=1"])
    assert [o.model_dump() for o in cfg.objectives] == [
        {"name": "kl", "weight": 0.5, "temperature": 2}, {"name": "gold", "weight": 0.5},
        {"name": "hidden_mse", "weight": 1.0, "layers": [[6, 2], [3, 1]]}]


def test_objectives_and_matches_through_the_api():
    cfg = api.distill_config(objective=["kl:temperature=2", {"name": "gold", "weight": 0.3}],
                             match="teacher_layer=6,student_layer=2,feature=hidden,loss=mse")
    assert [(o.name, o.weight, o.params) for o in cfg.objectives] == [("kl", 1.0, {"temperature": 2}), ("gold", 0.3, {})]
    assert [(m.teacher_layer, m.student_layer, m.feature, m.loss) for m in cfg.matches] == [(6, 2, "hidden", "mse")]


def test_match_specs(captured):
    cfg = cli_config(captured, ["distill", "--match", "teacher_layer=6,student_layer=2,feature=hidden,loss=mse",
                                "--match", "teacher_layer=3,student_layer=1,feature=attention,loss=kl,weight=0.5"])
    assert [(m.teacher_layer, m.student_layer, m.feature, m.loss, m.weight) for m in cfg.matches] == [
        (6, 2, "hidden", "mse", 1.0), (3, 1, "attention", "kl", 0.5)]


@pytest.mark.parametrize("args,match", [
    (["--objective", "temperature=2"], "must start with the objective's name"),
    (["--objective", ":weight=1"], "must start with the objective's name"),
    (["--objective", "kl:temperature"], "'temperature' is not key=value"),
    (["--objective", "kl:temperature=2,temperature=3"], "gives 'temperature' twice"),
    (["--objective", "kl:name=gold"], "names the objective twice"),
    (["--objective", "hidden_mse:layers=[[6,2],[3,1]"], "lacks a closing ']'"),
    (["--objective", "x:sep='a,b"], "unclosed ' quote"),
    (["--objective", "hidden_mse:layers=[6,2]]"], "unmatched ']'"),
    (["--objective", "kl:weight=-1"], "objectives.0.weight"),
    (["--match", "teacher_layr=6,student_layer=2"], "did you mean 'matches[0].teacher_layer'"),
    (["--match", "teacher_layer=6,student_layer=2,feature=nope"], "matches.0.feature"),
    (["--match", ","], "--match ',' is empty"),
    (["--layers", "1,x"], "--layers '1,x'"),
])
def test_bad_specs_exit_2_with_a_sentence(args, match, capsys):
    assert match in cli_error(["distill", *args], capsys)


def test_layers():
    assert api.distill_config(layers="upper").student.layers == "upper"
    assert api.distill_config(layers="3").student.layers == [3]
    assert api.distill_config(layers="0, 5").student.layers == [0, 5]
    assert api.distill_config(layers=[1, 2]).student.layers == [1, 2]


def test_split_top_level():
    assert api.split_top_level("a=1,b=[2,3],c={x: [4, 5]},d='6,7'", "x") == ["a=1", "b=[2,3]", "c={x: [4, 5]}", "d='6,7'"]
    assert api.split_top_level("", "x") == []


# --- help ---------------------------------------------------------------------------------------

def help_text(command, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)


def test_distill_help_lists_the_data_flags_and_the_new_ones(capsys, monkeypatch):
    text = help_text("distill", capsys, monkeypatch)
    for option in ("--task", "--text-column", "--text-pair-column", "--label-column", "--max-eval", "--max-length",
                   "--max-train", "--general", "--init-from", "--layers", "--cache-budget-gb", "--cache-teacher",
                   "--online-teacher", "--objective", "--match", "--set", "--config", "--resume", "--lr", "--out",
                   "--embeddings", "--crf", "--pair-mode"):
        assert option in text, option
    assert "the data (and columns) the teacher was trained on" in " ".join(text.split())
    assert "[u; v; |u-v|; u*v]" in text  # help text is not read as rich markup


def test_every_table_flag_is_an_option():
    import typer.main

    group = typer.main.get_command(__import__("kdexam.cli", fromlist=["app"]).app)
    for command, (table, _) in TABLES.items():
        params = group.commands[command].params
        opts = {o for p in params for o in (*p.opts, *p.secondary_opts)}
        for flag in table.values():
            assert set(flag.options[0].split("/")) <= opts, flag.name
        assert {"--set", "--config", "-c", "--resume"} <= opts
    assert "--model" not in {o for p in group.commands["distill"].params for o in p.opts}


def test_teacher_help_still_lists_its_flags(capsys, monkeypatch):
    text = help_text("teacher", capsys, monkeypatch)
    for option in ("--data", "--model", "--out", "--lr", "--text-column", "--label-column", "--set", "--resume"):
        assert option in text, option


# --- api.distill's result and the printed table ----------------------------------------------------

class FakeResult:
    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d


@pytest.fixture()
def fake_distill(monkeypatch):
    """``kdexam.training.distill`` replaced by a module whose ``distill`` returns ``returned['value']``."""
    import sys
    import types

    returned = {}
    module = types.ModuleType("kdexam.training.distill")
    module.distill = lambda cfg, resume=False, overwrite=False: returned["value"]
    monkeypatch.setitem(sys.modules, "kdexam.training.distill", module)
    return returned


RESULT = {"task": "classification", "dataset": "d", "split": "test", "primary_metric": "accuracy",
          "teacher": {"name": "t", "params": 1000, "metrics": {"accuracy": 0.9}},
          "student": {"name": "bilstm", "params": 100, "metrics": {"accuracy": 0.85},
                      "loyalty": {"label": 0.93, "probability": 0.9}},
          "retention": 0.944, "compression": 10.0}


def test_api_distill_returns_the_metrics_dict(fake_distill):
    fake_distill["value"] = FakeResult(RESULT)
    assert api.distill(teacher="t", out="o") == RESULT
    fake_distill["value"] = dict(RESULT)
    assert api.distill(teacher="t", out="o") == RESULT


def run_ok(args, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr().out
    assert e.value.code == 0, out
    return " ".join(out.split())


def test_cli_prints_the_distill_table(fake_distill, capsys):
    fake_distill["value"] = FakeResult(RESULT)
    out = run_ok(["distill", "--teacher", "t", "--out", "runs/s"], capsys)
    assert "0.8500" in out and "0.9300" in out and "retention 0.944, 10.0x fewer parameters; run directory: runs/s" in out
    fake_distill["value"] = {k: v for k, v in RESULT.items() if k != "retention"} | {
        "student": {k: v for k, v in RESULT["student"].items() if k != "loyalty"}}
    out = run_ok(["distill", "--teacher", "t", "--out", "runs/s"], capsys)
    assert "0.8500" in out and "10.0x fewer parameters; run directory: runs/s" in out and "retention" not in out


def test_cli_prints_a_line_for_a_general_run(fake_distill, capsys):
    fake_distill["value"] = FakeResult({"general": True, "teacher": {"name": "t", "params": 1000}, "seconds": 3.0})
    out = run_ok(["distill", "--general", "--teacher", "t", "--out", "runs/enc"], capsys)
    assert "general distillation done" in out and "runs/enc" in out and "--init-from runs/enc" in out


def test_overwrite_switch_reaches_the_run(captured):
    cli_config(captured, ["teacher", "--data", "d", "--out", "o", "--overwrite"])
    assert captured["overwrite"] is True and captured["resume"] is False


def test_an_options_spelling_as_an_api_keyword_names_the_keyword():
    """The api's keywords are the flags' names; three options are spelled otherwise on the command line."""
    from kdexam import api

    with pytest.raises(TypeError, match=r"unknown argument\(s\): ema, lr \(--lr is learning_rate; --ema is ema_decay\)"):
        api.distill_config(teacher="t", lr=1e-4, ema=0.99)
    with pytest.raises(TypeError, match=r"\(--online-teacher is cache_teacher=False\)"):
        api.distill_config(teacher="t", online_teacher=True)

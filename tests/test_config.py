import re

import pytest

from kdexam.config import TeacherRunConfig, build_config, load_config, save_config
from kdexam.errors import KdexamError


def test_defaults_and_overrides():
    cfg = build_config(TeacherRunConfig, {"train": {"epochs": 5}}, {"train.epochs": 2, "data.name": "x", "seed": None})
    assert cfg.train.epochs == 2  # the flag wins over the file
    assert cfg.data.name == "x"
    assert cfg.seed == 42  # None overrides are ignored
    assert cfg.train.learning_rate == 5e-5


def test_unknown_key_names_closest(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 3\n")
    with pytest.raises(KdexamError, match=r"Unknown config key 'train.epoch'; did you mean 'train.epochs'"):
        load_config(TeacherRunConfig, p)


def test_unknown_top_level_key():
    with pytest.raises(KdexamError, match=r"'modle'.*'model'"):
        build_config(TeacherRunConfig, {"modle": "x"})


def test_bad_value_type():
    with pytest.raises(KdexamError, match=r"train.epochs"):
        build_config(TeacherRunConfig, {"train": {"epochs": "many"}})


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [1, 2\n")
    with pytest.raises(KdexamError, match="not valid YAML"):
        load_config(TeacherRunConfig, p)
    with pytest.raises(KdexamError, match="does not exist"):
        load_config(TeacherRunConfig, tmp_path / "nope.yaml")
    p.write_text("- a\n- b\n")
    with pytest.raises(KdexamError, match="mapping"):
        load_config(TeacherRunConfig, p)


def test_yaml_is_safe_loaded(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(KdexamError, match="not valid YAML"):
        load_config(TeacherRunConfig, p)


def test_resolved_config_round_trips(tmp_path):
    cfg = build_config(TeacherRunConfig, {"data": {"name": "d", "max_train": 10}, "out": "o"})
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(TeacherRunConfig, tmp_path / "config.yaml") == cfg


def test_run_defaults_survive_partial_train_overrides():
    from kdexam.config import DistillRunConfig

    t = build_config(TeacherRunConfig, {}, {"train.num_threads": 1})
    assert t.train.epochs == 2 and t.train.num_threads == 1
    d = build_config(DistillRunConfig, {"train": {"batch_size": 8}}, {"student.kind": "cnn"})
    assert (d.train.epochs, d.train.patience, d.train.batch_size, d.train.learning_rate) == (10, 3, 8, 1e-3)


def test_config_schemas_import_no_torch():
    import subprocess
    import sys

    code = "import sys, kdexam.config; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:1])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_objective_parameters_pass_through_the_config_and_are_checked_when_built():
    from kdexam.config import DistillRunConfig
    from kdexam.errors import KdexamError
    from kdexam.objectives import ModelShape, build_objectives

    d = build_config(DistillRunConfig, {"objectives": [{"name": "hidden_mse", "layer": "uniform"}]})
    assert d.objectives[0].params == {"layer": "uniform"}
    with pytest.raises(KdexamError, match="did you mean 'layers'"):
        build_objectives(d.objectives, "classification", teacher=ModelShape(6, 384, 12), student=ModelShape(2, 384, 12))


def test_mixed_precision_no_survives_yaml(tmp_path):
    """YAML reads a bare ``no`` as false; ``mixed_precision: no`` (a file, or ``--set``) must mean "no"."""
    from kdexam.config.flags import parse_set

    p = tmp_path / "c.yaml"
    p.write_text("train:\n  mixed_precision: no\n")
    assert load_config(TeacherRunConfig, p).train.mixed_precision == "no"
    key, value = parse_set("train.mixed_precision=no")
    assert build_config(TeacherRunConfig, {}, {key: value}).train.mixed_precision == "no"
    with pytest.raises(KdexamError, match="mixed_precision"):
        build_config(TeacherRunConfig, {"train": {"mixed_precision": True}})


def test_a_config_folder_and_a_far_name_are_said_plainly(tmp_path):
    """--config of a folder said "does not exist"; an unknown built-in name far from every known one got
    an unrelated "did you mean" ('foo' → 'movie-dialog')."""
    from kdexam.config import DistillRunConfig, load_config
    from kdexam.data.builtin import get_dataset
    from kdexam.teachers.builtin_models import get_model

    with pytest.raises(KdexamError, match=r"Config file '.*' is a folder; pass the YAML file to --config"):
        load_config(DistillRunConfig, tmp_path)
    for get in (get_dataset, get_model):
        with pytest.raises(KdexamError) as e:
            get("foo")
        assert "did you mean" not in str(e.value) and "choose one of" in str(e.value)


def test_yaml_keys_given_twice_and_yaml_1_1_numbers_are_not_read_as_something_else(tmp_path):
    """A key given twice kept the last one without a word (train: {epochs: 3} then train: {batch_size: 8}
    trained 10 epochs); --set seed=010 was seed 8 (octal) and seed=1:30 was 90 (base 60)."""
    from kdexam import api
    from kdexam.config import DistillRunConfig

    p = tmp_path / "c.yaml"
    p.write_text("teacher: T\nout: O\ntrain: {epochs: 3}\ntrain: {batch_size: 8}\n", encoding="utf-8")
    with pytest.raises(KdexamError, match=r"not valid YAML at line 4 \(the key 'train' is given twice\)"):
        load_config(DistillRunConfig, p)
    with pytest.raises(KdexamError, match="the key 'train' is given twice"):
        api.distill_config(p)
    assert api.distill_config(teacher="T", out="O", set=["seed=010"]).seed == 10
    with pytest.raises(KdexamError, match="seed"):
        api.distill_config(teacher="T", out="O", set=["seed=1:30"])
    p.write_text("teacher: T\nout: O\nseed: 010\n", encoding="utf-8")
    assert load_config(DistillRunConfig, p).seed == 10


def test_audit_of_the_config_surface(tmp_path):
    """unfreeze: true was read as 1 (int | 'all' escaped the true/false guard); a match's weight could
    be infinite; api.benchmark(models="DIR") read the string as a list of its characters."""
    from kdexam import api

    with pytest.raises(KdexamError, match=r"'stages.0.unfreeze' is invalid: must be a number, not true"):
        api.distill_config(teacher="T", out="O", set=["stages=[{unfreeze: true}]"])
    with pytest.raises(KdexamError, match=r"'matches.0.weight' is invalid: Input should be a finite number"):
        api.distill_config(teacher="T", out="O", match=["teacher_layer=1,student_layer=1,weight=.inf"])
    with pytest.raises(KdexamError, match=str(tmp_path / "none")):
        api.benchmark(models=str(tmp_path / "none"))


def test_an_objective_list_that_cannot_train_is_refused_before_any_work():
    """--objective kl --objective kl and all weights 0 were refused only when the objectives were built,
    after the data and the transfer set (an exam: after its teachers trained)."""
    from kdexam import api
    from kdexam.training.run_checks import check_run_config

    for objectives, said in [(["kl", "kl"], "Objective 'kl' is listed 2 times"),
                             (["gold:weight=0"], "All objective weights are 0"),
                             (["kl:weight=0", "gold:weight=0"], "All objective weights are 0")]:
        with pytest.raises(KdexamError, match=said):
            check_run_config(api.distill_config(teacher="T", out="O", objective=objectives))
    check_run_config(api.distill_config(teacher="T", out="O", objective=["kl:weight=0", "gold"]))  # (one weight above 0)


def test_set_of_another_type_is_a_sentence():
    from kdexam import api

    with pytest.raises(KdexamError, match=r"set=5 is neither a mapping of config keys nor a list of 'key=value' strings"):
        api.distill_config(teacher="T", out="O", set=5)


def test_the_teacher_flag_wins_over_a_set_teacher():
    """--set teacher=/y --teacher /x was refused with "teacher and teachers both name the teacher"; flags win."""
    from kdexam import api

    cfg = api.distill_config(out="O", set=["teacher=/y"], teacher="/x")
    assert cfg.teacher_dirs == ["/x"]


def test_an_invalid_value_is_named_by_its_config_key_alone():
    """A union's or constrained type's error named pydantic's branch tags: 'student.layers.literal[...]',
    'stages.0.unfreeze.constrained-int'."""
    from kdexam import api

    for setting, key in (("student.layers=[1.5]", "student.layers"), ("stages=[{unfreeze: -1}]", "stages.0.unfreeze")):
        with pytest.raises(KdexamError, match=rf"^Config value '{re.escape(key)}' is invalid: "):
            api.distill_config(teacher="T", out="O", set=[setting])

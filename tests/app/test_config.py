import pytest
import yaml

from cfer.app.config import RunConfig
from cfer.app.config_io import config_from_dict, config_to_dict, dump_config, load_config, with_overrides


def test_defaults_round_trip_through_yaml():
    cfg = RunConfig()
    assert config_from_dict(yaml.safe_load(dump_config(cfg))) == cfg
    assert config_to_dict(cfg)["continual"]["strategy"] == "cfer"
    assert config_to_dict(cfg)["continual"]["psmr_mode"] is None  # the preset's
    assert cfg.classes.basic == ("happy", "sad", "fearful", "angry", "surprised", "disgusted")


def test_a_yaml_file_sets_nested_keys_and_normalises_class_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 4\nclasses:\n  compound: [Happily-Surprised, awe]\ncontinual: {per_step: 1}\n"
                    "fewshot: {holdout: 0, shots: [1]}\n")
    cfg = config_from_dict(load_config(path))
    assert cfg.seed == 4 and cfg.continual.per_step == 1
    assert cfg.classes.compound == ("happily_surprised", "awed")
    assert cfg.fewshot.shots == (1,)


@pytest.mark.parametrize("values, message", [
    ({"continual": {"epoch": 3}}, "did you mean 'continual.epochs'"),
    ({"contnual": {"epochs": 3}}, "did you mean 'continual'"),
    ({"data": {"format": "imagefoldr", "path": "."}}, "did you mean 'imagefolder'"),
    ({"data": {"format": "csv"}}, "add --data PATH or drop --format"),
    ({"data": {"path": "."}}, "data.format is needed"),
    ({"data": {"image_size": 8}}, "must be >= 16"),
    ({"data": {"subject_pattern": "s\\d+"}}, "exactly one group"),
    ({"data": {"split": [0.5, 0.5, 0.5]}}, "summing to 1"),
    ({"classes": {"basic": ["hapy", "sad"]}}, "closest known names: ['happy']"),
    ({"classes": {"basic": ["happy", "sad"], "compound": ["sad"]}}, "both basic and compound"),
    ({"continual": {"epochs": 0}}, "positive whole number"),
    ({"continual": {"epochs": "two"}}, "whole number, got 'two'"),
    ({"continual": {"memory_fraction": 1.5}}, "[0, 1]"),
    ({"continual": {"psmr_mode": "fixed"}}, "'grow' or 'limit'"),
    ({"continual": {"strategy": "icarl"}}, "continual.strategy must be one of ['cfer', 'published']"),
    ({"continual": {"strategy": "published", "logit_adjustment": 1.0}},
     "takes no continual.logit_adjustment; use --strategy cfer"),
    ({"continual": {"nearest_mean": "herding"}}, "'off', 'memory' or 'memory+new'"),
    ({"continual": {"previous_weight_scale": "linear"}}, "'constant' or 'sqrt_ratio'"),
    ({"continual": {"head": "cos"}}, "continual.head must be 'cosine' or 'linear'"),
    ({"continual": {"strategy": "published", "head": "cosine"}}, "takes no continual.head"),
    ({"continual": {"strategy": "published", "weight_aligning": True}}, "takes no continual.weight_aligning"),
    ({"continual": {"weight_aligning": "maybe"}}, "must be true or false (on or off), got 'maybe'"),
    ({"continual": {"strategy": "published", "mirror_training": True}}, "takes no continual.mirror_training"),
    ({"continual": {"previous_weight": -1}}, "continual.previous_weight must be >= 0"),
    ({"continual": {"psmr_first_step_weight": 0}}, "continual.psmr_first_step_weight must be > 0"),
    ({"continual": {"shift_training": -1}}, "continual.shift_training must be a whole number of pixels >= 0"),
    ({"continual": {"shift_training": 1.5}}, "continual.shift_training must be a whole number"),
    ({"continual": {"strategy": "published", "shift_training": 2}}, "takes no continual.shift_training"),
    ({"continual": {"strategy": "published", "psmr_first_step_weight": 0.5}},
     "takes no continual.psmr_first_step_weight"),
    ({"continual": {"strategy": "published", "previous_weight_scale": "sqrt_ratio"}},
     "takes no continual.previous_weight_scale"),
    ({"fewshot": {"holdout": 3, "ways": 5}}, "hold out at least 5"),
    ({"fewshot": {"classifier": "knn"}}, "choose one of"),
    ({"explain": {"method": "gradcamm"}}, "did you mean 'gradcam'"),
    ({"continual": {"order": ["awed"]}, "classes": {"compound": ["awed", "hatred"]}}, "permutation"),
    ({"data": [1, 2]}, "must be a mapping"),
    ({"teacher": {"member_training": "sequential"}}, "teacher.member_training must be one of ['joint', 'one_by_one']"),
    ({"teacher": {"member_training": "one_by_one"}}, "needs an ensemble model.arch ('ensemble:A+B')"),
])
def test_bad_values_fail_with_a_message_naming_the_fix(values, message):
    with pytest.raises(ValueError) as err:
        config_from_dict(values)
    assert message in str(err.value)


@pytest.mark.parametrize("values, message", [
    ({"data": {"path": "/does/not/exist", "format": "csv"}}, "does not exist"),
    ({"data": {"path": ".", "format": "imagefolder", "crop_faces": True, "crop_cascade": "haarcascade_frontalfase.xml"}},
     "unknown data.crop_cascade"),
    ({"model": {"arch": "resnet_18"}}, "'resnet18'"),
    ({"model": {"weights": "/no/such/weights.pt"}}, "is not a file"),
])
def test_what_a_config_names_outside_itself_is_checked_at_the_start(values, message):
    from cfer.app.prepare import check_inputs

    cfg = config_from_dict(values)  # plain data: a saved config loads even where its data has gone
    with pytest.raises(ValueError) as err:
        check_inputs(cfg)
    assert message in str(err.value)


def test_command_line_strings_are_converted_and_checked():
    cfg = with_overrides(RunConfig(), {"continual.epochs": "2", "fewshot.shots": "1,5,10",
                                       "classes.compound": "awed,hatred", "continual.memory_fraction": "0.2"})
    assert cfg.continual.epochs == 2 and cfg.fewshot.shots == (1, 5, 10)
    assert cfg.classes.compound == ("awed", "hatred") and cfg.continual.memory_fraction == 0.2
    assert RunConfig().continual.epochs == 4  # the base is not changed
    with pytest.raises(ValueError, match="unknown config key 'continual.epoch'"):
        with_overrides(RunConfig(), {"continual.epoch": "2"})


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist; write one with `cfer run --print-config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n- not a mapping\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {path: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_config(broken)


@pytest.mark.parametrize("values, key", [
    ({"continual": {"temperature": float("nan")}}, "continual.temperature"),
    ({"continual": {"gamma0": float("inf")}}, "continual.gamma0"),
    ({"teacher": {"lr": float("inf")}}, "teacher.lr"),
    ({"continual": {"lr": float("-inf")}}, "continual.lr"),
    ({"data": {"crop_margin": float("nan")}}, "data.crop_margin"),
    ({"data": {"synthetic_difficulty": float("inf")}}, "data.synthetic_difficulty"),
    ({"data": {"split": [0.6, float("nan"), 0.2]}}, "data.split"),
    ({"continual": {"epochs": float("inf")}}, "continual.epochs"),
    ({"seed": -1}, "seed must lie in"),
    ({"seed": 1e23}, "seed must lie in"),
])
def test_non_finite_and_out_of_range_numbers_are_refused_naming_the_key(values, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        config_from_dict(values)


def test_yaml_nan_and_inf_are_refused_when_the_file_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("continual:\n  temperature: .nan\nteacher:\n  lr: .inf\n")
    with pytest.raises(ValueError, match="must be a finite number"):
        config_from_dict(load_config(path))


def test_api_users_building_sections_directly_get_the_same_refusal():
    from cfer.app.config import ContinualSection, FewShotSection

    with pytest.raises(ValueError, match=r"continual\.feature_weight must be a finite number"):
        ContinualSection(feature_weight=float("inf"))
    with pytest.raises(ValueError, match=r"fewshot\.queries"):
        FewShotSection(queries=float("nan"))


def test_the_teacher_recipe_is_fast_on_synthetic_faces_and_photo_on_a_dataset(tmp_path):
    from cfer.app.recipe import teacher_config
    from cfer.continual.teacher import PHOTO_RECIPE, TeacherConfig

    name, tc = teacher_config(RunConfig())
    assert name == "fast" and (tc.augment, tc.optimizer, tc.max_epochs, tc.lr) == ("shift", "adam", 15, TeacherConfig.lr)
    on_data = config_from_dict({"data": {"path": str(tmp_path), "format": "imagefolder"}})
    name, tc = teacher_config(on_data)
    assert name == "photo" and tc == PHOTO_RECIPE.__class__(**{**PHOTO_RECIPE.__dict__, "arch": tc.arch})
    forced = config_from_dict({"teacher": {"recipe": "photo", "epochs": 7, "lr": 3e-4}})
    name, tc = teacher_config(forced)
    assert name == "photo" and tc.max_epochs == 7 and tc.lr == 3e-4 and tc.patience == PHOTO_RECIPE.patience
    assert teacher_config(with_overrides(on_data, {"teacher.recipe": "fast"}))[1].augment == "shift"
    with pytest.raises(ValueError, match="teacher.recipe must be one of"):
        config_from_dict({"teacher": {"recipe": "strong"}})


def test_align_faces_and_the_recipe_are_run_options(capsys):
    from cfer.app import cli

    assert cli.main(["run", "--data", "faces/", "--format", "imagefolder", "--align-faces", "--teacher-recipe", "photo",
                     "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["align_faces"] is True and printed["data"]["crop_faces"] is False
    assert printed["teacher"]["recipe"] == "photo" and printed["teacher"]["epochs"] is None
    assert cli.main(["run", "--align-faces", "--print-config"]) == 2  # without --data it would do nothing
    assert "data.align_faces needs data.path" in capsys.readouterr().err


def test_precise_batchnorm_reaches_the_teacher_from_the_command_line_and_the_yaml(capsys):
    from cfer.app import cli
    from cfer.app.config import TeacherSection
    from cfer.app.recipe import teacher_config

    assert teacher_config(RunConfig())[1].precise_bn is False
    on = RunConfig(teacher=TeacherSection(precise_bn=True))
    assert teacher_config(on)[1].precise_bn is True
    with pytest.raises(ValueError, match="teacher.precise_bn must be true or false"):
        TeacherSection(precise_bn="yes")
    assert cli.build_parser().parse_args(["teacher", "--out", "t.pt", "--precise-bn"]).precise_bn is True
    assert cli.main(["run", "--teacher-precise-bn", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["teacher"]["precise_bn"] is True
    assert teacher_config(config_from_dict(printed))[1].precise_bn is True


def test_mixup_reaches_the_teacher_from_the_command_line_and_the_yaml_and_is_refused_on_clips(capsys):
    from cfer.app import cli
    from cfer.app.config import DataSection, TeacherSection
    from cfer.app.recipe import teacher_config

    assert teacher_config(RunConfig())[1].mixup == 0.0
    assert teacher_config(RunConfig(teacher=TeacherSection(mixup=0.2)))[1].mixup == 0.2
    for bad in (-0.1, True, "0.2"):
        with pytest.raises(ValueError, match="teacher.mixup must be a number >= 0"):
            TeacherSection(mixup=bad)
    with pytest.raises(ValueError, match="does not apply to clips"):
        RunConfig(data=DataSection(path="c.csv", format="clips"), teacher=TeacherSection(mixup=0.2))
    assert cli.build_parser().parse_args(["teacher", "--out", "t.pt", "--mixup", "0.4"]).mixup == 0.4
    assert cli.main(["run", "--teacher-mixup", "0.2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["teacher"]["mixup"] == 0.2
    assert teacher_config(config_from_dict(printed))[1].mixup == 0.2


def test_layer_decay_reaches_the_photo_teacher_and_is_refused_without_adamw(capsys):
    from cfer.app import cli
    from cfer.app.config import DataSection, TeacherSection
    from cfer.app.recipe import teacher_config

    assert teacher_config(RunConfig())[1].layer_decay == 1.0
    photo = RunConfig(teacher=TeacherSection(recipe="photo", layer_decay=0.75))
    assert teacher_config(photo)[1].layer_decay == 0.75
    assert teacher_config(photo)[1].optimizer == "adamw"
    on_data = RunConfig(data=DataSection(path="faces.csv", format="csv"), teacher=TeacherSection(layer_decay=0.75))
    assert teacher_config(on_data)[1].layer_decay == 0.75  # auto resolves to the photo recipe on a user's data
    with pytest.raises(ValueError, match="add --teacher-recipe photo"):
        RunConfig(teacher=TeacherSection(layer_decay=0.75))  # auto on the synthetic faces: the fast recipe, Adam
    for bad in (0.0, 1.5, True, "0.75"):
        with pytest.raises(ValueError, match="teacher.layer_decay must"):
            TeacherSection(layer_decay=bad)
    assert cli.main(["run", "--teacher-recipe", "photo", "--teacher-layer-decay", "0.75", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["teacher"]["layer_decay"] == 0.75
    assert teacher_config(config_from_dict(printed))[1].layer_decay == 0.75

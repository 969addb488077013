import json

from cfer.app import cli
from cfer.continual.teacher import TeacherConfig, train_teacher
from cfer.data.synthetic import make_synthetic_splits
from cfer.models.io import save_model


def test_fewshot_command_on_a_saved_model(tmp_path, capsys):
    sp = make_synthetic_splits(classes="basic", subjects=(3, 1, 1), per_class=2, image_size=32)
    res = train_teacher(train=sp["train"], val=sp["val"], config=TeacherConfig(arch="cfer_tiny", max_epochs=1))
    path = save_model(res.model, tmp_path / "m.pt", arch="cfer_tiny", classes=res.classes, extra={"image_size": 32})
    out = tmp_path / "fs.json"
    code = cli.main(["fewshot", "--model", str(path), "--ways", "5", "--shots", "1", "--queries", "3",
                     "--episodes", "20", "--subjects", "2", "--per-class", "2", "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "5-way 1-shot (prototype):" in text and "95% CI, 20 episodes" in text
    result = json.loads(out.read_text())
    assert result["episodes"] == 20 and 0 <= result["accuracy"] <= 1
    assert set(result["per_class"]) <= {"happily_surprised", "happily_disgusted", "sadly_fearful", "sadly_angry",
                                        "sadly_surprised", "sadly_disgusted", "fearfully_angry", "fearfully_surprised",
                                        "fearfully_disgusted", "angrily_surprised", "angrily_disgusted",
                                        "disgustedly_surprised", "appalled", "hatred", "awed"}
    # Too few images per class for the requested shots + queries: a clear error, exit code 2.
    assert cli.main(["fewshot", "--model", str(path), "--shots", "5", "--queries", "15", "--episodes", "5",
                     "--subjects", "1", "--per-class", "2"]) == 2
    assert "needs at least shots + queries" in capsys.readouterr().err


def test_teacher_then_explain_commands(tmp_path, capsys):
    model = tmp_path / "teacher.pt"
    assert cli.main(["teacher", "--out", str(model), "--arch", "cfer_tiny", "--image-size", "32", "--epochs", "2",
                     "--subjects", "3", "1", "1", "--per-class", "2"]) == 0
    text = capsys.readouterr().out
    assert "best validation accuracy" in text and "test accuracy" in text and model.exists()
    out = tmp_path / "explain"
    assert cli.main(["explain", "--model", str(model), "--out", str(out), "--subjects", "1", "--per-class", "1"]) == 0
    text = capsys.readouterr().out
    assert "explained 22 faces with gradcam" in text and "localisation" in text
    assert {p.name for p in out.iterdir()} == {"overlays.png", "regions.png", "similarity.png", "explain.json"}
    summary = json.loads((out / "explain.json").read_text())
    shares = summary["region_attention"]["happy"]
    assert set(shares) == {"forehead", "brows", "eyes", "nose", "cheeks", "mouth", "chin"}
    assert sum(shares.values()) <= 1.0 + 1e-6
    # An --out that is a file: one line, exit 2, no traceback.
    assert cli.main(["explain", "--model", str(model), "--out", str(model), "--subjects", "1", "--per-class", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cfer explain: error: cannot use") and not any("Traceback" in line for line in err)


def test_a_grey_model_is_used_with_its_own_channels_by_fewshot_and_explain(tmp_path, capsys):
    sp = make_synthetic_splits(classes="basic", subjects=(3, 1, 1), per_class=2, image_size=32, channels=1)
    res = train_teacher(train=sp["train"], val=sp["val"], config=TeacherConfig(arch="cfer_tiny", max_epochs=1))
    path = save_model(res.model, tmp_path / "grey.pt", arch="cfer_tiny", classes=res.classes, extra={"image_size": 32})
    assert cli.main(["fewshot", "--model", str(path), "--ways", "3", "--shots", "1", "--queries", "1",
                     "--episodes", "5", "--subjects", "2", "--per-class", "1"]) == 0  # no --grey needed
    assert "3-way 1-shot" in capsys.readouterr().out
    assert cli.main(["explain", "--model", str(path), "--out", str(tmp_path / "ex"), "--subjects", "1",
                     "--per-class", "1"]) == 0
    assert "explained" in capsys.readouterr().out


def _photo_folder(root):
    from cfer.data.export import export_image_folder

    sp = make_synthetic_splits(classes="basic", subjects=(3, 2, 2), per_class=2, image_size=32)
    for part in sp.values():
        export_image_folder(root, images=part.images, labels=part.class_names, subjects=part.subjects,
                            overwrite=True)
    return root


def test_the_teacher_command_takes_the_data_options_of_run(tmp_path, capsys):
    data = _photo_folder(tmp_path / "faces")
    out = tmp_path / "t.pt"
    common = ["teacher", "--out", str(out), "--arch", "cfer_tiny", "--epochs", "1", "--data", str(data),
              "--format", "imagefolder", "--image-size", "32"]
    assert cli.main(common) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("cfer teacher: error:")
    assert "give --subject-pattern" in err and "subject_pattern=" not in err  # advice a CLI user can follow
    assert cli.main([*common, "--subject-pattern", r"^(s\d+)_", "--grey"]) == 0
    assert "(photo recipe)" in (printed := capsys.readouterr().out) and "test accuracy" in printed  # --data: photo
    from cfer.continual.growing import load_model
    from cfer.models.io import input_channels

    model, classes = load_model(out)
    assert input_channels(model) == 1 and len(classes) == 6
    assert cli.main([*common, "--subject-pattern", r"^(s\d+)_", "--recipe", "fast", "--align-faces"]) == 0
    assert "(fast recipe)" in capsys.readouterr().out

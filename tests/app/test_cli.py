import json

import numpy as np
import pytest
from PIL import Image

from cfer.app import cli


def test_synth_writes_a_grid_and_an_export_that_the_reader_loads_back(tmp_path, capsys):
    grid, export = tmp_path / "grid.png", tmp_path / "faces"
    assert cli.main(["synth", "--out", str(grid), "--subjects", "2", "--classes", "happy,sad,awed",
                     "--export", str(export), "--per-class", "2"]) == 0
    out = capsys.readouterr().out
    assert "12 images 48x48x3, 3 classes, subjects: 2" in out  # --image-size defaults to 48 everywhere
    with Image.open(grid) as im:
        assert im.size[0] > 200 and im.size[1] > 100
    assert sorted(p.name for p in export.iterdir()) == ["awed", "happy", "manifest.csv", "sad"]
    assert len(list((export / "happy").glob("*.png"))) == 4

    summary = tmp_path / "summary.json"
    assert cli.main(["data", str(export), "--format", "imagefolder", "--subject-pattern", r"^(s\d+)_",
                     "--json", str(summary)]) == 0
    info = json.loads(summary.read_text())
    assert info["n"] == 12 and info["subjects"] == 2
    assert info["counts"] == {"happy": 4, "awed": 4, "sad": 4} or info["counts"] == {"happy": 4, "sad": 4, "awed": 4}

    # The manifest reads back the same items.
    assert cli.main(["data", str(export / "manifest.csv"), "--format", "csv"]) == 0
    assert "12 images" in capsys.readouterr().out

    # Skipped items are counted in the printed summary and in the JSON, not only in a warning.
    (export / "sad" / "s0000_broken.png").write_bytes(b"not a png")
    assert cli.main(["data", str(export), "--format", "imagefolder", "--subject-pattern", r"^(s\d+)_",
                     "--skip-invalid", "--json", str(summary)]) == 0
    assert "left out: 1 corrupt image" in capsys.readouterr().out
    assert json.loads(summary.read_text())["skipped"] == {"corrupt image": 1}


def test_exported_pixels_match_the_renderer(tmp_path):
    from cfer.data.readers import read_image_folder
    from cfer.data.synthetic import render_faces

    cli.main(["synth", "--out", str(tmp_path / "g.png"), "--subjects", "1", "--classes", "happy",
              "--export", str(tmp_path / "f"), "--seed", "3"])
    faces = render_faces(classes=["happy"], n_subjects=1, per_class=1, seed=3, image_size=48)
    loaded = read_image_folder(tmp_path / "f", image_size=48)
    assert np.array_equal(loaded.images[0], faces.images[0])


def test_errors_are_reported_without_a_traceback(tmp_path, capsys):
    assert cli.main(["data", str(tmp_path / "missing"), "--format", "imagefolder"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cfer data: error:") and "missing" in err
    assert cli.main(["synth", "--out", str(tmp_path / "g.png"), "--classes", "sadly happy"]) == 2
    assert "unknown expression 'sadly happy'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["synth", "--out", str(tmp_path / "g.png"), "--subjects", "0"])


@pytest.mark.parametrize("command", ["data", "teacher", "fewshot", "explain"])
def test_every_command_that_reads_data_takes_the_same_data_options(command):
    from cfer.app.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    flags = {f for a in sub._actions for f in a.option_strings}
    assert {"--format", "--image-size", "--grey", "--crop-faces", "--crop-cascade", "--crop-margin",
            "--crop-min-neighbors", "--subject-pattern", "--skip-invalid"} <= flags


def test_face_crop_options_are_checked_with_the_flag_named(tmp_path, capsys):
    (tmp_path / "happy").mkdir()
    assert cli.main(["data", str(tmp_path), "--format", "imagefolder", "--crop-faces", "--crop-margin", "-1"]) == 2
    assert "cfer data: error: --crop-margin/--crop-min-neighbors/--crop-cascade:" in capsys.readouterr().err


def test_synth_photos_exports_frames_that_need_cropping(tmp_path, capsys):
    out = tmp_path / "photos"
    assert cli.main(["synth", "--out", str(tmp_path / "g.png"), "--subjects", "2", "--classes", "happy,awed",
                     "--export", str(out), "--photos"]) == 0
    text = capsys.readouterr().out
    assert "exported 4 JPEG photos (320x240) and manifest.csv" in text
    assert "--crop-cascade haarcascade_frontalface_alt2.xml" in text
    assert sorted(p.name for p in (out / "happy").iterdir()) == ["s0000_000.jpg", "s0001_000.jpg"]
    with Image.open(out / "awed" / "s0001_000.jpg") as im:
        assert im.size == (320, 240)
    assert (out / "manifest.csv").read_text().count("\n") == 5
    assert cli.main(["synth", "--out", str(tmp_path / "g.png"), "--photos"]) == 2
    assert "add --export DIR" in capsys.readouterr().err


def test_run_takes_hub_weights_and_offline_without_a_copy_says_how_to_pass_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), "--arch", "resnet18", "--weights", "hf-hub:nobody/nothing"]) == 2
    err = capsys.readouterr().err
    assert "model.weights: cannot load the hub weights 'nobody/nothing'" in err
    assert "hf download nobody/nothing model.safetensors" in err and "--weights DIR/model.safetensors" in err
    assert not out.exists()


def test_freeze_stages_is_checked_against_the_architecture_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), "--arch", "vit_face_micro", "--freeze-stages", "5"]) == 2
    assert "model.freeze_stages: freezing 5 stages after the stem would leave nothing" in capsys.readouterr().err
    assert cli.main(["run", "--out", str(out), "--freeze-stages", "-1"]) == 2
    assert "model.freeze_stages must be a whole number >= 0 (0: none)" in capsys.readouterr().err
    assert not out.exists()

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cfer.app.pretrain_job
from cfer.app import cli
from cfer.models import create_backbone, load_weights
from cfer.pretrain.train import PretrainResult

TINY = ["--arch", "vit_face_micro", "--subjects", "2", "--per-class", "1", "--image-size", "32", "--grey",
        "--batch-size", "16", "--no-progress"]


def test_pretrain_writes_its_run_folder_and_the_encoder_loads_into_create_backbone(tmp_path, capsys):
    out = tmp_path / "mae"
    assert cli.main(["pretrain", "--out", str(out), "--epochs", "2", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "cfer pretrain vit_face_micro on 44 faces (32 px, grey)" in printed
    assert f"cfer run --arch vit_face_micro --weights {out / 'encoder.pt'} --image-size 32 --grey" in printed
    assert sorted(p.name for p in out.iterdir()) == [".cfer.lock", "checkpoint.pt", "encoder.pt", "pretrain.json",
                                                      "reconstruction.png"]
    record = json.loads((out / "pretrain.json").read_text())
    assert record["status"] == "finished" and record["n_images"] == 44 and record["in_chans"] == 1
    assert [h["epoch"] for h in record["history"]] == [1, 2] and record["options"]["mask_ratio"] == 0.75
    net = create_backbone("vit_face_micro", in_chans=1, img_size=32)
    assert load_weights(net, out / "encoder.pt", strict=True)["missing"] == []
    with Image.open(out / "reconstruction.png") as im:
        assert im.size[0] > 400 and im.size[1] > 200

    # the same command again is refused: the folder holds a run, and the message names --resume
    assert cli.main(["pretrain", "--out", str(out), "--epochs", "2", *TINY]) == 2
    assert f"already holds a pretraining run; go on with it with `cfer pretrain --resume {out}`" in \
        capsys.readouterr().err
    assert cli.main(["pretrain", "--resume", str(out), "--epochs", "3"]) == 2
    assert "--resume goes on with the run's saved options; drop --epochs" in capsys.readouterr().err


def test_a_pretraining_folder_is_locked_while_a_process_works_in_it(tmp_path, capsys):
    from cfer.app.runfolder import hold_lock

    out = tmp_path / "mae"
    out.mkdir()
    with hold_lock(out):  # another process's run, as far as the command can tell
        assert cli.main(["pretrain", "--out", str(out), "--epochs", "1", *TINY]) == 2
    assert "another cfer process (pid" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [".cfer.lock"]  # nothing written
    assert cli.main(["pretrain", "--out", str(out), "--epochs", "1", *TINY]) == 0  # free again: it runs


def test_a_killed_pretraining_resumes_to_the_losses_of_an_uninterrupted_one(tmp_path, capsys, monkeypatch):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert cli.main(["pretrain", "--out", str(whole), "--epochs", "2", *TINY]) == 0
    save = PretrainResult.save_encoder

    def ctrl_c_after_the_first_epoch(self, path, **kwargs):
        save(self, path, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(PretrainResult, "save_encoder", ctrl_c_after_the_first_epoch)
    assert cli.main(["pretrain", "--out", str(killed), "--epochs", "2", *TINY]) == 130
    assert f"go on with: cfer pretrain --resume {killed}" in capsys.readouterr().err
    assert json.loads((killed / "pretrain.json").read_text())["status"] == "running"
    monkeypatch.setattr(PretrainResult, "save_encoder", save)
    assert cli.main(["pretrain", "--resume", str(killed), "--threads", "1"]) == 0  # threads may change
    assert "(resuming)" in capsys.readouterr().out
    a, b = (json.loads((d / "pretrain.json").read_text())["history"] for d in (whole, killed))
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    ea, eb = (torch.load(d / "encoder.pt", weights_only=True)["state_dict"] for d in (whole, killed))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)


def test_an_unlabelled_folder_is_read_without_a_format(tmp_path, capsys):
    faces = tmp_path / "faces" / "clip1"
    faces.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(faces / f"frame{i}.png")
    assert cli.main(["pretrain", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "faces"), "--epochs", "1",
                     *TINY]) == 0
    assert "on 10 faces (32 px, grey)" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--arch", "resnet18"], "not a timm ViT; give vit_face_tiny"),
    (["--mask-ratio", "1.5"], r"mask_ratio must lie in \[0, 1\)"),
    (["--data", "faces.csv"], "is not a folder; give a folder of face images, or --format"),
    (["--data", ".", "--align-faces"], "--crop-faces and --align-faces read through a dataset format"),
    (["--image-size", "36"], "image side 36 is not a multiple of the encoder's 8-pixel patches: use 32 or 40"),
])
def test_bad_options_fail_with_the_fix_and_write_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "faces.csv").write_text("path,label\n")
    out = tmp_path / "run"
    assert cli.main(["pretrain", "--out", str(out), *TINY, *argv]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_someone_elses_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["pretrain", "--out", str(tmp_path), *TINY]) == 2
    assert "is not empty and is not a cfer pretraining folder (1 entries: notes.txt)" in capsys.readouterr().err
    assert cli.main(["pretrain", "--resume", str(tmp_path)]) == 2
    assert "holds no pretraining checkpoint" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert cfer.app.pretrain_job.OPTION_KEYS  # the saved options

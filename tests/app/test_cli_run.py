"""`cfer run`: options, errors before any work, and a real kill followed by --resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cfer.app import cli
from cfer.models.io import load_checkpoint

KILL_CONFIG = {
    "model": {"arch": "cfer_tiny"},
    "data": {"image_size": 32, "synthetic_subjects": [4, 2, 3], "synthetic_per_class": 6},
    "teacher": {"epochs": 2},
    "continual": {"epochs": 2, "per_step": 1, "orders": 1},
    "fewshot": {"episodes": 50, "shots": [1]},
    "explain": {"per_class": 1},
}
LOGGED_CONFIG = {**KILL_CONFIG, "continual": {"epochs": 2, "per_step": 3, "orders": 1}}


def test_the_strategy_flag_picks_a_preset(capsys):
    assert cli.main(["run", "--strategy", "published", "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["continual"]["strategy"] == "published"
    assert cli.main(["run", "--nearest-mean", "off", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["continual"]
    assert printed["strategy"] == "cfer" and printed["nearest_mean"] == "off"


def test_the_previous_student_flags_reach_the_strategy(capsys):
    from cfer.app.config_io import config_from_dict
    from cfer.app.stages import strategy_options

    assert cli.main(["run", "--previous-weight", "5", "--previous-weight-scale", "sqrt_ratio", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["continual"]["previous_weight"], printed["continual"]["previous_weight_scale"]) == (5.0, "sqrt_ratio")
    options = strategy_options(config_from_dict(printed))
    assert (options.previous_weight, options.previous_weight_scale) == (5.0, "sqrt_ratio")
    preset = strategy_options(config_from_dict({}))  # unset: the preset's values
    assert (preset.previous_weight, preset.previous_weight_scale) == (3.0, "constant")


def test_the_memory_share_flag_reaches_the_strategy(capsys):
    from cfer.app.config_io import config_from_dict
    from cfer.app.stages import strategy_options

    assert cli.main(["run", "--psmr-first-step-weight", "1", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["continual"]["psmr_first_step_weight"] == 1.0
    assert strategy_options(config_from_dict(printed)).psmr_first_step_weight == 1.0
    assert strategy_options(config_from_dict({})).psmr_first_step_weight == 0.5  # unset: the preset's


def test_the_head_flag_reaches_the_strategy(capsys):
    from cfer.app.config_io import config_from_dict
    from cfer.app.stages import strategy_options

    assert cli.main(["run", "--head", "cosine", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["continual"]["head"] == "cosine" and strategy_options(config_from_dict(printed)).head == "cosine"
    assert strategy_options(config_from_dict({})).head == "linear"  # unset: the preset's


def test_the_shift_flag_reaches_the_strategy(capsys):
    from cfer.app.config_io import config_from_dict
    from cfer.app.stages import strategy_options

    assert cli.main(["run", "--shift-training", "2", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["continual"]["shift_training"] == 2 and strategy_options(config_from_dict(printed)).shift_training == 2
    assert strategy_options(config_from_dict({})).shift_training == 0  # unset: the preset's


@pytest.mark.parametrize("key", ["weight_aligning", "mirror_training"])
@pytest.mark.parametrize("word, value", [("off", False), ("on", True), ("false", False)])
def test_the_preset_switches_take_on_or_off(capsys, key, word, value):
    from cfer.app.config_io import config_from_dict
    from cfer.app.stages import strategy_options

    assert cli.main(["run", "--" + key.replace("_", "-"), word, "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["continual"][key] is value
    assert getattr(strategy_options(config_from_dict(printed)), key) is value
    assert getattr(strategy_options(config_from_dict({})), key) is True  # unset: the preset's


def test_print_config_merges_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"continual": {"epochs": 7, "per_step": 2}, "seed": 5}))
    assert cli.main(["run", "--config", str(cfg), "--epochs", "3", "--shots", "1,10", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["continual"]["epochs"] == 3  # the flag wins over the file
    assert printed["continual"]["per_step"] == 2 and printed["seed"] == 5
    assert printed["fewshot"]["shots"] == [1, 10]


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "continual.epochs must be a positive whole number"),
    (["--format", "csv"], "add --data PATH or drop --format"),
    (["--crop-faces"], "data.crop_faces needs data.path; add --data PATH or drop --crop-faces"),
    (["--align-faces"], "data.align_faces needs data.path; add --data PATH or drop --align-faces"),
    (["--device", "gpu"], "device must be one of ['auto', 'cpu', 'cuda'] or cuda:N"),
    (["--precision", "fp8"], "precision must be one of ['fp32', 'bf16', 'fp16']"),
    (["--workers", "-1"], "workers must be a whole number >= 0"),
    (["--data", "nowhere/", "--format", "imagefolder"], "does not exist"),
    (["--arch", "resnet19"], "close names"),
    (["--basic", "happy,sadd"], "unknown expression 'sadd'; closest known names: ['sad'"),
    (["--psmr-mode", "both"], "'grow' or 'limit'"),
    (["--strategy", "icarl"], "continual.strategy must be one of ['cfer', 'published']"),
    (["--strategy", "published", "--psmr-mode", "limit"], "takes no continual.psmr_mode; use --strategy cfer"),
    (["--nearest-mean", "exemplars"], "continual.nearest_mean must be 'off', 'memory' or 'memory+new'"),
    (["--logger", "tensorbord"], "unknown continual.logger 'tensorbord' (did you mean --logger tensorboard?)"),
    (["--config", "missing.yaml"], "does not exist"),
    (["--seed", "-1"], "seed must lie in [0, 4294967295]"),
    (["--seed", "1e23"], "seed must be a whole number, got '1e23'"),
    (["--memory-fraction", "nan"], "continual.memory_fraction"),
])
def test_wrong_options_fail_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bad_weights_files_fail_before_any_work(tmp_path, capsys):
    import timm
    import torch

    text = tmp_path / "weights.txt"
    text.write_text("these are not weights\n")
    torch.save(timm.create_model("resnet18", num_classes=6).state_dict(), tmp_path / "resnet.pt")
    for weights, message in ((text, "not a readable torch file"), (tmp_path / "resnet.pt", "fills 0 of the model's")):
        out = tmp_path / "run"
        assert cli.main(["run", "--out", str(out), "--weights", str(weights), "--arch", "cfer_tiny"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("cfer run: error: model.weights:") and message in err and len(err.splitlines()) == 1
        assert not out.exists()


def test_resume_refuses_other_options_and_non_run_folders(tmp_path, capsys):
    assert cli.main(["run", "--resume", str(tmp_path), "--epochs", "2"]) == 2
    assert "--resume goes on with the run's saved config; drop --epochs" in capsys.readouterr().err
    assert cli.main(["run", "--resume", str(tmp_path)]) == 2
    assert "is not a cfer run folder" in capsys.readouterr().err


def _default_sigint() -> None:
    # A suite started in the background (`nohup make test &`) runs with SIGINT ignored, and a
    # child inherits that: Python then never raises KeyboardInterrupt. The Ctrl-C tests need
    # the signal as a terminal delivers it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cfer(*args, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "cfer.app.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint, **kwargs)


def _comparable(metrics: dict) -> dict:
    """What a resumed run must reproduce: everything but timings."""
    out = json.loads(json.dumps(metrics))
    for rec in out["continual"]["orders"]:
        rec.pop("step_time_s"), rec.pop("mean_step_time_s")
    return out


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_metrics(tmp_path):
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(KILL_CONFIG))
    whole, cut = tmp_path / "whole", tmp_path / "cut"

    reference = _cfer("run", "--config", str(config), "--out", str(whole), "--no-progress")
    victim = _cfer("run", "--config", str(config), "--out", str(cut), "--no-progress", "--logger", "csv")
    ckpt = cut / "checkpoints" / "order0.pt"
    deadline, step = time.time() + 300, -1
    while time.time() < deadline and victim.poll() is None:
        if ckpt.is_file():
            step = load_checkpoint(ckpt)["step"]
            if step >= 2:
                break
        time.sleep(0.05)
    assert victim.poll() is None, "the run ended before it could be killed:\n" + victim.stderr.read()[-2000:]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt)["step"]  # a whole, loadable checkpoint survives the kill
    assert 2 <= killed_at < 10
    assert not (cut / "metrics.json").exists() and not (cut / "report.html").exists()
    assert not list(cut.rglob("*.tmp"))

    resumed = _cfer("-v", "run", "--resume", str(cut), "--no-progress")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert f"from experience {killed_at + 1} of 11" in err  # it went on, it did not start again
    assert f"report: {(cut / 'report.html').resolve()}" in out

    out_ref, err_ref = reference.communicate(timeout=600)
    assert reference.returncode == 0, err_ref[-3000:]
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((cut / "metrics.json").read_text())
    assert len(a["continual"]["orders"][0]["matrix"]) == 11
    assert _comparable(b) == _comparable(a)
    # The logger went on after the kill: the last logged stream accuracy of every step is the run's.
    rows = _metric_rows(cut / "logs" / "csv" / "order0" / "metrics.csv")
    by_x = {r["x"]: float(r["value"]) for r in rows if r["name"] == "Top1_Acc_Stream/eval_phase/test_stream"}
    assert list(by_x.values()) == pytest.approx(b["continual"]["orders"][0]["seen_accuracy"], abs=1e-9)


def _metric_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", "tensorboard"])
def test_a_run_with_a_logger_writes_the_curves_of_every_step(tmp_path, capsys, kind):
    config, out = tmp_path / "logged.yaml", tmp_path / "run"
    config.write_text(yaml.safe_dump(LOGGED_CONFIG))
    assert cli.main(["run", "--config", str(config), "--out", str(out), "--no-progress", "--logger", kind]) == 0
    record = json.loads((out / "results" / "order0.json").read_text())
    folder = out / "logs" / kind / "order0"
    wanted = {"Distillation/kd", "Distillation/feature", "Distillation/gamma", "Memory/items",
              "Loss_MB/train_phase/train_stream", "Top1_Acc_Stream/eval_phase/test_stream",
              *(f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}" for j in range(len(record["matrix"])))}
    if kind == "csv":
        rows = _metric_rows(folder / "metrics.csv")
        values = {n: [float(r["value"]) for r in rows if r["name"] == n] for n in {r["name"] for r in rows}}
        assert (folder / "training_results.csv").is_file() and (folder / "eval_results.csv").is_file()
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(folder))
        acc.Reload()
        values = {n: [e.value for e in acc.Scalars(n)] for n in acc.Tags()["scalars"]}
    assert wanted <= set(values)
    assert values["Top1_Acc_Stream/eval_phase/test_stream"] == pytest.approx(record["seen_accuracy"], abs=1e-6)
    assert values["Memory/items"][-1] <= record["memory_size"]
    assert values["Top1_Acc_Exp/eval_phase/test_stream/Exp000"] == pytest.approx(
        [row[0] for row in record["matrix"]], abs=1e-6)


@pytest.mark.slow
def test_cfer_run_on_an_image_folder_of_photos_that_need_face_cropping(tmp_path, capsys):
    from cfer.data.synthetic.framed import PHOTO_CROPPER, export_photo_folder, render_framed_faces

    photos = render_framed_faces(n_subjects=10, per_class=2, face_size=64, frame_size=(160, 200), seed=3)
    n = export_photo_folder(tmp_path / "photos", photos=photos)
    assert n == len(photos) == 22 * 10 * 2  # neutral too: a run ignores classes it is not given
    config = tmp_path / "photos.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"image_size": 32, "crop_cascade": PHOTO_CROPPER.cascade, "crop_margin": PHOTO_CROPPER.margin,
                 "crop_min_neighbors": PHOTO_CROPPER.min_neighbors},
        "model": {"arch": "cfer_tiny"}, "teacher": {"epochs": 2},
        "continual": {"epochs": 1, "per_step": 5},
        "fewshot": {"episodes": 50, "shots": [1], "queries": 2}, "explain": {"per_class": 1}}))
    out = tmp_path / "run"
    code = cli.main(["run", "--config", str(config), "--data", str(tmp_path / "photos"), "--format", "imagefolder",
                     "--crop-faces", "--subject-pattern", r"^(s\d+)_", "--skip-invalid", "--out", str(out),
                     "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert f"report: {(out / 'report.html').resolve()}" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    d = metrics["data"]
    assert d["source"].startswith("imagefolder data at ")
    kept = d["n_train"] + d["n_val"] + d["n_test"]
    assert kept >= 0.95 * n  # faces found in (nearly) every photo
    assert len(d["basic"]) == 6 and len(d["compound"]) == 10 and len(d["holdout"]) == 5
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["path"] == str((tmp_path / "photos").resolve())  # --resume works from anywhere
    assert len(metrics["continual"]["orders"][0]["matrix"]) == 3
    assert (out / "explain" / "student" / "overlays.png").is_file()


def test_ctrl_c_stops_other_commands_without_a_traceback(tmp_path):
    proc = _cfer("teacher", "--out", str(tmp_path / "t.pt"), "--arch", "cfer_tiny", "--epochs", "50")
    seen = ""
    deadline = time.time() + 120
    while time.time() < deadline and "img/s" not in seen and "it/s" not in seen and "%" not in seen:
        seen += proc.stderr.read(1)  # the progress bar shows once the work has started
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "cfer teacher: interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "t.pt").exists()


@pytest.mark.slow
def test_ctrl_c_stops_with_the_resume_command(tmp_path):
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(KILL_CONFIG))
    out = tmp_path / "run"
    proc = _cfer("run", "--config", str(config), "--out", str(out), "--no-progress")
    ckpt = out / "checkpoints" / "order0.pt"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ckpt.is_file():
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"interrupted; go on with: cfer run --resume {out}" in err
    assert load_checkpoint(ckpt)["step"] >= 0  # what was done is kept, whole


@pytest.mark.parametrize("command", ["teacher", "pretrain"])
def test_face_options_without_data_are_refused_not_ignored(tmp_path, capsys, command):
    out = tmp_path / "out"
    assert cli.main([command, "--out", str(out), "--align-faces"]) == 2
    assert "--align-faces applies to --data only; the synthetic faces are rendered centred and level" in \
        capsys.readouterr().err
    assert not out.exists()


def test_the_default_config_in_the_docs_is_what_print_config_prints(capsys):
    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    start = text.index("other option):\n\n```yaml\n") + len("other option):\n\n```yaml\n")
    assert cli.main(["run", "--print-config"]) == 0
    assert text[start:text.index("```", start)] == capsys.readouterr().out

"""`cfer synth --video` writes clips that `cfer data` and `cfer run --format clips` read: the
whole job (clip teacher, continual stream, few-shot, per-frame Grad-CAM, report) on MP4 files."""

import json

import pytest

from cfer.app import cli
from cfer.continual.growing import load_model


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    code = cli.main(["synth", "--video", "--export", str(root / "clips"), "--out", str(root / "preview.gif"),
                     "--subjects", "6", "--per-class", "3", "--frames", "6", "--image-size", "32",
                     "--classes", "happy,sad,happily_surprised,sadly_angry"])
    assert code == 0 and (root / "preview.gif").is_file()
    return root / "clips" / "manifest.csv"


def test_synth_video_needs_an_export_folder(tmp_path, capsys):
    assert cli.main(["synth", "--video", "--out", str(tmp_path / "p.gif")]) == 2
    assert "--export DIR" in capsys.readouterr().err


def test_cfer_data_reads_the_clip_manifest(manifest, capsys):
    assert cli.main(["data", str(manifest), "--format", "clips", "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "ClipDataset: 72 clips" in out and "happily_surprised" in out


@pytest.mark.slow
def test_cfer_run_on_clips_writes_a_report_with_frame_strips(manifest, tmp_path):
    out = tmp_path / "run"
    code = cli.main(["run", "--data", str(manifest), "--format", "clips", "--image-size", "32", "--arch",
                     "temporal_tiny", "--basic", "happy,sad", "--out", str(out), "--no-progress",
                     "--teacher-epochs", "2", "--epochs", "1", "--per-step", "1", "--orders", "1", "--holdout", "0", "--ways", "2",
                     "--shots", "1", "--queries", "2", "--episodes", "5"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["continual"]["orders"][0]["matrix"]) == 3  # the basic step and two compound steps
    assert metrics["explain"]["teacher"]["n_clips"] > 0 and len(metrics["explain"]["student"]["region_curves"]) == 4
    for name in ("teacher", "student"):
        assert (out / "explain" / name / "overlays.png").is_file() and (out / "explain" / name / "curves.png").is_file()
    report = (out / "report.html").read_text()
    assert "frame by frame" in report and "explain/student/curves.png" in report
    # The saved student is a clip model again, with the run's layout.
    student, classes = load_model(out / "students" / "order0.pt")
    assert student.backbone.clip_layout.frames == 8 and student.backbone.clip_layout.image_size == 32
    assert len(classes) == 4

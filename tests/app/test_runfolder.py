"""The run folder's guards: the lock, other people's folders, failed starts, unwritable
places, the data fingerprint on --resume and the time of killed invocations."""

import errno
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from cfer.app import cli, stages
from cfer.app.config_io import config_from_dict
from cfer.app.fingerprint import DataChangedError
from cfer.app.pipeline import run_pipeline
from cfer.app.runfolder import LOCK_NAME, RunExistsError, RunFolderError, RunLockedError, claim_run_folder
from cfer.data.export import export_image_folder
from cfer.data.synthetic import render_faces

TINY = {
    "model": {"arch": "cfer_tiny"},
    "data": {"image_size": 32, "synthetic_subjects": [4, 2, 3], "synthetic_per_class": 6},
    "teacher": {"epochs": 1},
    "continual": {"epochs": 1, "per_step": 4, "orders": 1},
    "fewshot": {"episodes": 20, "shots": [1]},
    "explain": {"per_class": 1},
}


def _cfer(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "cfer", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path):
    run = tmp_path / "run"
    with claim_run_folder(run, resume=False):
        assert (run / LOCK_NAME).read_text().strip() == str(os.getpid())
        done = _cfer("run", "--out", str(run), "--no-progress")
        assert done.returncode == 2
        assert f"another cfer process (pid {os.getpid()}) is running in {run}" in done.stderr
        assert "Traceback" not in done.stderr
        with pytest.raises(RunLockedError):  # a second claim in this process is refused too
            with claim_run_folder(run, resume=False):
                pass
    with claim_run_folder(run, resume=False):  # released: the folder can be claimed again
        pass


def test_someone_elses_folder_is_refused_and_left_untouched(tmp_path):
    own = tmp_path / "site"
    own.mkdir()
    (own / "report.html").write_text("my own report")
    with pytest.raises(RunFolderError, match=r"is not empty and is not a cfer run folder \(1 entries: report.html\)"):
        with claim_run_folder(own, resume=False):
            pass
    assert sorted(p.name for p in own.iterdir()) == ["report.html"]  # no lock file was put there
    assert (own / "report.html").read_text() == "my own report"
    afile = tmp_path / "out.txt"
    afile.write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        with claim_run_folder(afile, resume=False):
            pass
    with pytest.raises(RunFolderError, match="is not a cfer run folder"):
        with claim_run_folder(tmp_path / "nowhere", resume=True):
            pass
    assert not (tmp_path / "nowhere").exists()


def test_an_empty_folder_or_a_crashed_claim_can_be_used(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / LOCK_NAME).write_text("12345\n")  # left by a process that died: the kernel dropped its lock
    with claim_run_folder(run, resume=False) as folder:
        assert not folder.created
        (run / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(RunExistsError):
        with claim_run_folder(run, resume=False):
            pass


def test_a_run_that_fails_its_data_checks_leaves_nothing_behind(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({**TINY, "fewshot": {"shots": [5], "queries": 20}}))
    out = tmp_path / "new"
    for _ in range(2):  # the same command fails the same way again: no half-made folder blocks it
        assert cli.main(["run", "--config", str(config), "--out", str(out), "--no-progress"]) == 2
        assert "need 25 test faces per class" in capsys.readouterr().err
        assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert cli.main(["run", "--config", str(config), "--out", str(kept), "--no-progress"]) == 2
    assert kept.is_dir() and not list(kept.iterdir())  # a folder the user made stays, empty


def test_unwritable_outputs_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(["run", "--out", str(afile / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cfer run: error:" in err and "Traceback" not in err
    assert "choose another --out" in err
    assert cli.main(["synth", "--out", str(afile / "grid.png"), "--subjects", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cfer synth: error: cannot use") and len(err.splitlines()) == 1

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli.main(["run", "--out", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cfer run: error: cannot use {tmp_path / 'ro'}: Read-only file system; the file system is "
                   "read-only: choose another --out")


def _photo_folder(root: Path, *, subjects: range) -> Path:
    classes = ["happy", "sad", "angry", "surprised", "fearful", "disgusted",
               "happily_surprised", "sadly_angry", "appalled", "awed", "fearfully_surprised", "happily_disgusted"]
    faces = render_faces(classes=classes, n_subjects=len(subjects), per_class=2, image_size=32,
                         seed=subjects.start, first_subject=subjects.start)
    export_image_folder(root, images=faces.images, labels=faces.class_names, subjects=faces.subjects,
                        overwrite=True)
    return root


def _stop_after_data(monkeypatch):
    """Make the teacher stage raise, as a kill after the data stage would end the run."""
    def killed(state):
        raise KeyboardInterrupt

    patched = tuple(stages.Stage(s.name, s.artefact, killed, s.load) if s.name == "teacher" else s
                    for s in stages.STAGES)
    monkeypatch.setattr("cfer.app.pipeline.STAGES", patched)


def test_resume_on_changed_data_is_refused_naming_what_changed(tmp_path, monkeypatch):
    warnings.filterwarnings("ignore")
    data = _photo_folder(tmp_path / "faces", subjects=range(0, 9))
    config = config_from_dict({**TINY, "data": {"path": str(data), "format": "imagefolder", "image_size": 32,
                                                "subject_pattern": r"^(s\d+)_"},
                               "fewshot": {"holdout": 0, "ways": 2, "shots": [1], "queries": 1}})
    run = tmp_path / "run"
    _stop_after_data(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, out_dir=run, progress=False)
    saved = json.loads((run / "data.json").read_text())
    assert saved["n"] == 9 * 12 * 2 and len(saved["pixels"]) == 3
    timing = json.loads((run / "timing.json").read_text())
    assert timing["invocations"] == 1 and timing["data_s"] > 0  # the killed invocation is counted
    with pytest.raises(KeyboardInterrupt):  # same data: the resume goes on (and is killed again)
        run_pipeline(config, out_dir=run, resume=True, progress=False)
    again = json.loads((run / "timing.json").read_text())
    assert again["invocations"] == 2 and again["data_s"] > timing["data_s"]
    _photo_folder(data, subjects=range(9, 11))  # two more people join the folder
    with pytest.raises(DataChangedError, match=r"the data changed since this run started: 48 faces added \(") as exc:
        run_pipeline(config, out_dir=run, resume=True, progress=False)
    assert "s0009_" in str(exc.value) and "start a new run with another --out" in str(exc.value)
    assert json.loads((run / "timing.json").read_text())["invocations"] == 2  # a refused resume ran nothing
    for path in [*data.rglob("s0009_*"), *data.rglob("s0010_*")]:
        path.unlink()
    with pytest.raises(KeyboardInterrupt):  # the same faces again: the resume goes on
        run_pipeline(config, out_dir=run, resume=True, progress=False)
    victim = sorted((data / "sad").glob("s0001_*"))[0]
    Image.open(victim).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(victim)  # an edited image
    with pytest.raises(DataChangedError, match=r"the pixels of the (train|val|test) faces changed"):
        run_pipeline(config, out_dir=run, resume=True, progress=False)

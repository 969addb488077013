"""``pip install cfer`` into a user's own environment: the wheel built from this tree
installs, carries its pinned requirements and the ``cfer`` command, and its few-shot
episodes work where learn2learn is not installed (it is not among the pip requirements:
its 0.2.0 sdist does not build on Python 3.11 without a Cython rebuild).

Offline throughout: the wheel is built with ``--no-build-isolation --no-index`` from a copy
of the sources (so the tree gets no ``build/`` or ``*.egg-info``), and installed with
``--no-deps --no-index`` into a fresh venv made without pip. That venv then sees this
interpreter's site-packages through a plain path line (so cfer's dependencies are there,
but none of that folder's ``.pth`` hooks run, the editable cfer of the development install
included), and a ``.pth`` of its own makes ``import learn2learn`` fail as if it were absent.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCKER = '''"""Make learn2learn unimportable, as in an environment without it."""
import importlib.abc
import sys


class _NoLearn2learn(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "learn2learn" or name.startswith("learn2learn."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoLearn2learn())
'''

USER_CODE = '''
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
try:
    import learn2learn  # noqa: F401
    blocked = False
except ImportError:
    blocked = True
import numpy as np
import torch
import cfer
from cfer.fewshot import EpisodeConfig, evaluate_embeddings

labels = np.repeat(np.arange(100, 106), 5)
feats = torch.as_tensor(np.repeat(np.eye(6), 5, axis=0), dtype=torch.float32)
res = evaluate_embeddings(feats, labels, config=EpisodeConfig(ways=5, shots=1, queries=2, episodes=10))
try:
    evaluate_embeddings(feats, labels, config=EpisodeConfig(ways=5, shots=1, queries=2, sampler="learn2learn"))
    explicit = "no error"
except ImportError as exc:
    explicit = str(exc)
print(json.dumps({"blocked": blocked, "file": cfer.__file__, "accuracy": res.accuracy, "episodes": res.episodes,
                  "sampler": res.config["sampler"], "classes": sorted(res.per_class), "explicit": explicit}))
'''


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _pinned_requirements() -> list[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_episodes_without_learn2learn(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_INDEX_URL")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONNOUSERSITE="1", HF_HUB_OFFLINE="1",
               MPLBACKEND="Agg")

    # 1. The wheel, from a copy of the sources, offline.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "cfer", src / "cfer", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("setup.py", "setup.cfg", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(tmp_path / "dist"), str(src)], cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("cfer-*.whl")

    # 2. Its metadata: the pinned requirements (learn2learn not among them), the command.
    with zipfile.ZipFile(wheel) as z:
        info = next(n.split("/")[0] for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = z.read(f"{info}/METADATA").decode()
        entry_points = z.read(f"{info}/entry_points.txt").decode()
        files = set(z.namelist())
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]
    assert base == _pinned_requirements()
    assert all("==" in r for r in base) and not any(r.startswith("learn2learn") for r in requires)
    assert "[console_scripts]" in entry_points and "cfer = cfer.app.cli:main" in entry_points
    assert {"cfer/fewshot/sampling.py", "cfer/fewshot/pools.py", "cfer/app/cli.py"} <= files

    # 3. A fresh venv (no pip, nothing downloaded); the wheel installed before the
    # venv can see anything else, so pip has nothing to replace.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
         cwd=tmp_path, env=env)
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env).stdout.strip())
    (site / "_no_learn2learn.py").write_text(BLOCKER)
    (site / "_no_learn2learn.pth").write_text("import _no_learn2learn\n")
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # 4. The user's environment: cfer from the venv, episodes by the built-in sampler.
    proc = _run([str(python), "-c", USER_CODE], cwd=tmp_path, env=env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["blocked"], "learn2learn was importable in the test venv"
    assert Path(out["file"]).resolve().is_relative_to(site.resolve())
    assert out["sampler"] == "builtin" and out["episodes"] == 10 and out["accuracy"] == 1.0
    assert set(out["classes"]) <= {str(v) for v in range(100, 106)}
    assert "pip install --no-deps -C--build-option=build_ext learn2learn==0.2.0" in out["explicit"]
    notes = [line for line in proc.stderr.splitlines() if "built-in sampler" in line]
    assert len(notes) == 1 and notes[0].startswith("INFO cfer.fewshot.sampling")

    # 5. The installed command starts (and imports the app) without learn2learn.
    helped = _run([str(venv / "bin" / "cfer"), "--help"], cwd=tmp_path, env=env)
    assert "fewshot" in helped.stdout and "usage: cfer" in helped.stdout

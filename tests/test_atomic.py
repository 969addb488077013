import os

import pytest

from cfer import atomic


def test_a_write_that_dies_before_the_rename_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic.write_json(path, {"step": 1})
    before = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process is stopped between writing and renaming

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_json(path, {"step": 2, "big": list(range(10_000))})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary file left behind


def test_json_nan_becomes_null_and_figures_are_real_pngs(tmp_path):
    import matplotlib.pyplot as plt

    atomic.write_json(tmp_path / "a.json", {"x": float("nan"), "y": [1.5, float("inf")]})
    assert (tmp_path / "a.json").read_text().replace(" ", "").replace("\n", "") == '{"x":null,"y":[1.5,null]}'
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    out = atomic.save_figure(fig, tmp_path / "sub" / "f.png", dpi=50)
    plt.close(fig)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_jsonable_gives_what_reading_the_json_back_gives(tmp_path):
    import json

    import numpy as np

    value = {"a": (1.5, float("nan"), float("inf")), 3: np.float32(0.25), "n": np.int64(7), "ok": True, "s": None}
    path = atomic.write_json(tmp_path / "v.json", value)
    assert atomic.jsonable(value) == json.loads(path.read_text())
    assert atomic.jsonable(value) == {"a": [1.5, None, None], "3": 0.25, "n": 7, "ok": True, "s": None}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_take_the_umask_mode_not_mkstemps_private_one(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic.write_text(tmp_path / "report.html", "<p>hi</p>")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    plain = tmp_path / "plain.txt"  # what open() itself gives under the same umask
    os.umask(umask)
    try:
        plain.write_text("x")
    finally:
        os.umask(old)
    assert plain.stat().st_mode & 0o777 == mode

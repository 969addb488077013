"""Executes the notebooks on tiny data: 01_gradcam_inspection and 02_continual_api."""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parents[2] / "notebooks"


def _execute(name: str, cwd: Path) -> list[dict]:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return outputs


@pytest.mark.slow
def test_gradcam_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CFER_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("CFER_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.delenv("CFER_MODEL", raising=False)
    outputs = _execute("01_gradcam_inspection.ipynb", tmp_path)
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # overlays, regions, similarity
    text = "".join(o.get("text", "") for o in outputs)
    assert "localisation vs a uniform map" in text
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"overlays.png", "regions.png", "similarity.png"}


@pytest.mark.slow
def test_continual_api_notebook_trains_over_its_own_benchmark_and_evaluates_few_shot(tmp_path, monkeypatch):
    monkeypatch.setenv("CFER_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("CFER_NOTEBOOK_OUT", str(tmp_path / "out"))
    before = sorted(p.name for p in NOTEBOOKS.iterdir())
    outputs = _execute("02_continual_api.ipynb", tmp_path)
    assert sorted(p.name for p in NOTEBOOKS.iterdir()) == before  # nothing written next to the notebooks
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_classes"] == 6 + 4  # the basic classes, then two steps of two compound classes
    assert [len(row) for row in results["matrix"]] == [1, 2, 3]
    assert len(results["seen_accuracy"]) == 3 and all(0 <= a <= 1 for a in results["seen_accuracy"])
    assert results["memory_items"] > 0
    assert results["last_distillation"]["kd"] > 0 and results["last_distillation"]["feat"] >= 0
    one_shot = results["fewshot"]["1"]
    assert one_shot["config"]["ways"] == 3 and one_shot["episodes"] == 50 and one_shot["ci95"] > 0
    text = "".join(o.get("text", "") for o in outputs)
    assert "3-way 1-shot" in text and "95% CI" in text
    # cfer's metric reached the user's logger through Avalanche's evaluator.
    logged = (tmp_path / "out" / "metrics.csv").read_text()
    assert "Distillation/kd" in logged and "Memory/items" in logged and "Top1_Acc_Exp/eval_phase/test_stream" in logged


def test_notebooks_write_to_a_temporary_folder_by_default():
    for name in ("01_gradcam_inspection.ipynb", "02_continual_api.ipynb"):
        source = "".join(c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells)
        assert 'os.environ.get("CFER_NOTEBOOK_OUT") or tempfile.mkdtemp(' in source, name

"""Executes notebooks/01_gradcam_inspection.ipynb on tiny data."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient


@pytest.mark.slow
def test_gradcam_notebook_runs(tmp_path, monkeypatch):
    path = Path(__file__).parents[2] / "notebooks" / "01_gradcam_inspection.ipynb"
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("CFER_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("CFER_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.delenv("CFER_MODEL", raising=False)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # overlays, regions, similarity
    text = "".join(o.get("text", "") for o in outputs)
    assert "localisation vs a uniform map" in text
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"overlays.png", "regions.png", "similarity.png"}

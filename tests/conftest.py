"""Suite-wide settings: nothing is downloaded, plots never open windows."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# The two commands: `make demo` and `make test`. Both install first (a fast no-op when
# .venv is already up to date).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cfer-installed
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install demo test benchmarks clean

install: $(STAMP)

# Re-run only when the packaging files change. learn2learn 0.2.0's shipped C files do
# not build on Python 3.11: rebuild them with Cython, and keep pip from resolving its
# own (numpy<2) dependencies; it imports gym at top level.
$(STAMP): setup.cfg setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(BIN)/python -c "import gym" 2>/dev/null || $(BIN)/python -m pip install --quiet --no-deps gym==0.26.2
	@$(BIN)/python -c "import learn2learn" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet --no-deps -C--build-option=build_ext learn2learn==0.2.0
	@$(BIN)/python -c "import learn2learn, cfer; print('cfer', cfer.__version__, 'installed in $(VENV)')"
	@touch $(STAMP)

demo: install
	$(BIN)/cfer synth --out runs/demo/synthetic_grid.png --subjects 5 --per-class 2 --export runs/demo/faces
	$(BIN)/cfer data runs/demo/faces --format imagefolder --subject-pattern '^(s\d+)_' \
		--grid runs/demo/loaded_grid.png --json runs/demo/summary.json

test: install
	$(BIN)/python -m pytest -q

benchmarks: install
	$(BIN)/python benchmarks/synth_speed.py
	$(BIN)/python benchmarks/synth_calibration.py

clean:
	rm -rf runs .pytest_cache build *.egg-info

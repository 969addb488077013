# The two commands: `make demo` and `make test`. Both install first (a fast no-op when
# .venv is already up to date).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cfer-installed
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install browser demo lint test benchmarks clean

install: $(STAMP)

# Re-run only when the packaging files change. learn2learn 0.2.0's shipped C files do
# not build on Python 3.11: rebuild them with Cython, and keep pip from resolving its
# own (numpy<2) dependencies; it imports gym at top level. It is not in setup.cfg: a plain
# `pip install cfer` cannot build it on 3.11, and cfer's built-in episode sampler stands in
# for it (cfer/fewshot/sampling.py).
$(STAMP): setup.cfg setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@$(BIN)/python -c "import gym" 2>/dev/null || $(BIN)/python -m pip install --quiet --no-deps gym==0.26.2
	@$(BIN)/python -c "import learn2learn" 2>/dev/null || \
		$(BIN)/python -m pip install --quiet --no-deps -C--build-option=build_ext learn2learn==0.2.0
	@$(BIN)/python -c "import learn2learn, cfer; print('cfer', cfer.__version__, 'installed in $(VENV)')"
	@touch $(STAMP)

# Headless Chromium for the tests that render HTML reports (tests/browser.py): Debian's
# package, installed only when `chromium` is missing. Never fails the build: without a
# browser those tests skip.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium; } >/dev/null \
		|| echo "could not install chromium (apt needs root and a package mirror); browser tests will be skipped"; }

# The main job on the synthetic faces: runs/demo/report.html. A second `make demo` resumes
# the folder's run (a finished one only re-renders its report; a killed one goes on).
DEMO := runs/demo
demo: install
	@if [ -f $(DEMO)/config.yaml ]; then $(BIN)/cfer run --resume $(DEMO); \
	else $(BIN)/cfer run --out $(DEMO); fi

# The linter (ruff.toml): pyflakes, pycodestyle, import order, annotations and RUF100,
# so every `# noqa` in the tree names a rule that would otherwise fire.
lint: install
	$(BIN)/ruff check .

test: install browser lint
	$(BIN)/python -m pytest -q

benchmarks: install
	$(BIN)/python benchmarks/synth_speed.py
	$(BIN)/python benchmarks/synth_calibration.py
	$(BIN)/python benchmarks/framed_detection.py
	$(BIN)/python benchmarks/run_job.py

clean:
	rm -rf runs .pytest_cache build *.egg-info

# Two entry points for a fresh machine (see README):
#   make demo   set up, run the smoke study, export the best config, train the final model
#   make test   set up, lint, run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup sources-debian demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build first and exactly: a looser torch requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	# GM rendering for the corpus; --no-deps: its pyaudio requirement is only for live playback
	$(BIN)/pip install -q --no-deps tinysoundfont==0.3.7
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Optional: better SoundFonts and flite's voices from Debian, used by the corpus when present
# (musicdet synth --list-sources shows what is used).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
sources-debian:
	$(SUDO) apt-get install -y fluid-soundfont-gm musescore-general-soundfont-small flite

demo: setup
	$(BIN)/python -m search.demo studies/smoke.yaml

lint: setup
	$(BIN)/ruff check musicdet search tests bench .ci

test: lint
	$(BIN)/pytest

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache

# Entry points for a fresh machine (see README):
#   make demo   set up, run the smoke study, export the best config, train the final model
#   make test   set up, lint, run the whole test suite
#   make model  set up, build the default corpus, train the default detector, ship it
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup sources-debian demo model test lint bench clean

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

# Optional: better SoundFonts, recorded music (game soundtracks), speech (Asterisk prompts),
# effects (OpenSFX, SuperTux) and TTS voices from Debian, used by the corpus when present
# (musicdet synth --list-sources shows what is used).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
sources-debian:
	$(SUDO) apt-get install -y fluid-soundfont-gm musescore-general-soundfont-small \
		asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 \
		asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722 \
		asterisk-core-sounds-ru-g722 openttd-opensfx wesnoth-1.16-music \
		warzone2100-music nexuiz-music supertux-data flite espeak-ng

demo: setup
	$(BIN)/python -m search.demo studies/smoke.yaml

# The default detector shipped in the package (musicdet/models/default.pt, <= 5 MB): the
# default corpus (HOURS of synthetic broadcast audio, seed SEED), then the run config CONFIG
# (studies/default-model.yaml: default front end, ce loss, augmentation; or a musicdet-search
# export) for EPOCHS epochs, with loss type LOSS if given. Everything is seeded (SEED): a
# rerun on DEVICE=cpu gives the same weights. REAL=DIR (labelled audio in REAL_FORMAT) also
# records an evaluation on it in the model file as REAL_NAME (musicdet info lists it).
# Work files go to MODEL_WORK; a stopped training resumes there. E.g.
#   make model                                   # 1 h corpus, ce, 20 epochs
#   make model REAL=../shared/realdev            # ... and record the realdev figures
HOURS       ?= 1
EPOCHS      ?= 20
SEED        ?= 0
CONFIG      ?= studies/default-model.yaml
LOSS        ?=
DEVICE      ?= cpu
REAL        ?=
REAL_FORMAT ?= generic
REAL_NAME   ?= $(notdir $(patsubst %/,%,$(REAL)))
MODEL_WORK  ?= runs/default-model
MODEL_OUT   ?= musicdet/models/default.pt
CORPUS      := $(MODEL_WORK)/corpus-$(HOURS)h-seed$(SEED)
MODEL_RUN   := $(MODEL_WORK)/$(basename $(notdir $(CONFIG)))$(LOSS:%=-%)-$(HOURS)h-$(EPOCHS)ep-seed$(SEED)

model: setup
	$(BIN)/musicdet synth --quiet --hours $(HOURS) --seed $(SEED) --out $(CORPUS)
	$(BIN)/musicdet train --quiet --config $(CONFIG) --data $(CORPUS) --format synth \
	  --device $(DEVICE) --set seed=$(SEED) --set data.synth_hours=$(HOURS) \
	  --set data.synth_seed=$(SEED) --set data.cache_dir=$(MODEL_WORK)/cache \
	  $(LOSS:%=--set loss.type=%) --set training.epochs=$(EPOCHS) --out $(MODEL_RUN)
ifeq ($(strip $(REAL)),)
	@echo "REAL not given: no real-set evaluation recorded (make model REAL=DIR records one)"
else
	$(BIN)/musicdet evaluate --quiet $(MODEL_RUN)/model.pt --data $(REAL) \
	  --format $(REAL_FORMAT) --cache-dir $(MODEL_WORK)/cache --device $(DEVICE) \
	  --record $(REAL_NAME) --out $(MODEL_RUN)/eval-$(REAL_NAME)
endif
	$(BIN)/python -m musicdet.shipped $(MODEL_RUN)/model.pt $(MODEL_OUT)
	$(BIN)/musicdet info $(MODEL_OUT)

lint: setup
	$(BIN)/ruff check musicdet search tests bench .ci

test: lint
	$(BIN)/pytest

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf runs .pytest_cache

# autotuned: `make run` and `make test` work on a machine with only Rust, Python 3 + pip and apt.
SHELL := /bin/bash
.DEFAULT_GOAL := run

# The one place the ONNX Runtime version is written: models/requirements.txt (the daemon reads it too).
ORT_VERSION := $(shell sed -n 's/^onnxruntime==//p' models/requirements.txt)
ORT_DIR := .ort
ORT_LIB := $(ORT_DIR)/onnxruntime/capi/libonnxruntime.so.$(ORT_VERSION)
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := jackd2 libjack-jackd2-dev pkg-config pipewire pipewire-jack systemd espeak-ng
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CONFIG ?= config/autotuned.toml
# Private server `make run` starts when no JACK/PipeWire server answers.
DEV_SERVER := autotuned-$(shell id -u)

.PHONY: run test jack-stale deps apt ort pydeps traindeps build models train quality compare demo docs bench bench-daemon bench-detector malloc-count fmt lint soak fuzz install-user install-config clean

deps: apt ort

# Installs those of the Debian packages $(1) that are missing.
define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

# System packages, installed only when missing.
apt:
	$(call apt_install,$(APT_PACKAGES))

# ONNX Runtime from the PyPI wheel, into ./.ort (the daemon looks there).
ort: $(ORT_LIB)
$(ORT_LIB):
	python3 -m pip install --quiet --disable-pip-version-check --no-deps --target $(ORT_DIR) onnxruntime==$(ORT_VERSION)

# Python tools for the model tests and benchmark.
pydeps: $(VENV)/.installed
$(VENV)/.installed: models/requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r models/requirements.txt
	touch $@

build: deps
	cargo build --release

# Runs the daemon in the foreground with the shipped config. Without a reachable JACK (or
# PipeWire-JACK) server, starts a private dummy jackd at 44.1 kHz / 512 first.
run: build
	@set -u; prefix=(); server_args=(); \
	if JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1; then \
	  echo "make: using the running JACK server"; \
	elif pw-jack jack_lsp >/dev/null 2>&1; then \
	  echo "make: using PipeWire's JACK layer (quantum forced to 512/44100)"; \
	  prefix=(env PIPEWIRE_QUANTUM=512/44100 pw-jack); \
	else \
	  echo "make: no JACK or PipeWire server reachable; starting a private dummy jackd '$(DEV_SERVER)' (44.1 kHz, 512 frames)"; \
	  jackd -n $(DEV_SERVER) --no-realtime -d dummy -r 44100 -p 512 >/tmp/$(DEV_SERVER).log 2>&1 & jack_pid=$$!; \
	  trap 'kill $$jack_pid 2>/dev/null' EXIT; \
	  for i in $$(seq 50); do JACK_DEFAULT_SERVER=$(DEV_SERVER) JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1 && break; sleep 0.1; done; \
	  server_args=(--set jack.server_name=$(DEV_SERVER)); \
	fi; \
	"$${prefix[@]}" ./target/release/autotuned --config $(CONFIG) "$${server_args[@]}" $(ARGS)

# Every test: the models (Python, ONNX Runtime) and the daemon (Rust, real jackd, real UDP).
test: deps pydeps jack-stale
	$(PY) -m pytest -q models
	cargo test --all-targets

# jackd's server registry in /dev/shm keeps servers that were killed (not stopped) and holds
# only a few, after which no new server starts. With no jackd running, every entry is stale.
jack-stale:
	@if ! pgrep -x jackd >/dev/null && ls /dev/shm/jack* >/dev/null 2>&1; then \
	  echo "make: removing stale JACK registry entries from /dev/shm"; rm -rf /dev/shm/jack*; fi

# Rebuilds models/*.onnx and the test fixtures (both deterministic). DETECTOR=yin builds YIN's
# DSP pitch and voicing stage instead of the learned one (models/train/), for comparison.
DETECTOR ?= learned
models: pydeps
	$(PY) models/build.py --detector $(DETECTOR)
	$(PY) tests/fixtures/build_fixtures.py

# Trains the learned detector (seeded, deterministic; ~5 min on 2 cores): writes
# models/train/detector-*.npz, report.json and loss.png, then rebuilds the models with it.
traindeps: $(VENV)/.train-installed
$(VENV)/.train-installed: models/train/requirements.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r models/train/requirements.txt
	touch $@

# What the trainer renders its noises with (espeak-ng is in APT_PACKAGES).
TRAIN_APT_PACKAGES := fluidsynth timgm6mb-soundfont
train: apt traindeps
	$(call apt_install,$(TRAIN_APT_PACKAGES))
	OPENBLAS_NUM_THREADS=2 $(PY) models/train/train.py
	$(MAKE) models

# The model quality benchmark (Praat-measured cents error, delay, seams, ORT time).
quality: pydeps
	$(PY) models/quality.py

# autotuned beside x42-fat1 and Autotalent (Debian's builds, run offline) and Praat's TD-PSOLA on
# the quality benchmark's voices and speech, both rates (models/compare.py). Debian's Autotalent needs glibc's
# old `__*_finite` functions, which target/libm_finite.so provides to it alone.
COMPARE_APT_PACKAGES := x42-plugins autotalent lv2file ladspa-sdk
compare: apt pydeps target/libm_finite.so
	$(call apt_install,$(COMPARE_APT_PACKAGES))
	LIBM_FINITE=$(CURDIR)/target/libm_finite.so $(PY) models/compare.py
target/libm_finite.so: models/libm_finite.c
	mkdir -p target && cc -O2 -shared -fPIC -o $@ $< -lm

# The demo phrase (the repo's synthetic singer, 8 s) before and after, and the pitch picture
# the README shows: demo/before.wav, demo/after.wav, demo/pitch.png.
demo: build pydeps
	$(PY) models/demo.py demo/before.wav
	./target/release/autotuned --config $(CONFIG) process demo/before.wav demo/after.wav --plot demo/pitch.png

# Regenerates the README's parameter table and the Open Stage Control session from
# src/parameters.rs (a test fails when they differ).
docs:
	cargo run --quiet -- docs

bench: deps
	cargo bench

# The whole daemon under a private jackd (44.1 kHz / 512) for 60 s (BENCH_SECONDS) per voice count
# in VOICES (e.g. VOICES=1,8,32), ROUNDS times: CPU, callback times, xruns, RSS.
bench-daemon: deps jack-stale
	VOICES=$(or $(VOICES),1) ROUNDS=$(or $(ROUNDS),1) cargo test --release --test bench_daemon daemon_cost -- --ignored --nocapture

# The detector in noise through the live daemon (its pitch meter against the truth), the learned
# model against the YIN one, on the held-out noisy set (models/train/heldout.py).
bench-detector: deps pydeps jack-stale
	$(PY) models/train/heldout.py target/detector-bench
	$(PY) models/build.py --detector yin --out-dir target/detector-bench/yin
	cargo test --release --test detector_live -- --ignored --nocapture

# ONNX Runtime's (and everyone's) mallocs on the JACK thread per callback, via LD_PRELOAD.
malloc-count: deps jack-stale target/malloc_count.so
	MALLOC_COUNT_SO=$(CURDIR)/target/malloc_count.so cargo test --release --test bench_daemon mallocs_per_callback -- --ignored --nocapture
target/malloc_count.so: benches/malloc_count.c
	mkdir -p target && cc -O2 -shared -fPIC -o $@ $< -ldl

# Ten minutes under jackd with a tone, parameter changes every 50 ms and a 20 000 msg/s OSC
# flood; prints xruns, callback times and RSS (SOAK_SECONDS to change the length).
soak: deps jack-stale
	cargo test --release --test soak -- --ignored --nocapture

# Fuzzes the OSC receive path (cargo-fuzz; nightly features through RUSTC_BOOTSTRAP).
FUZZ_SECONDS ?= 120
fuzz:
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p target/fuzz-corpus && cp -n fuzz/corpus/osc_packet/* target/fuzz-corpus/
	RUSTC_BOOTSTRAP=1 cargo fuzz run osc_packet target/fuzz-corpus fuzz/corpus/osc_packet -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536

fmt:
	cargo fmt

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

# Where install-user puts things (the units expect the user's home).
INSTALL_HOME ?= $(HOME)
# Installs for the systemd user unit: binary to ~/.local/bin, models and ONNX Runtime to
# ~/.local/share/autotuned, config to ~/.config/autotuned (kept if present), units to
# ~/.config/systemd/user.
install-user: build install-config
	install -Dm755 target/release/autotuned $(INSTALL_HOME)/.local/bin/autotuned
	install -d $(INSTALL_HOME)/.local/share/autotuned/models $(INSTALL_HOME)/.config/systemd/user
	install -m644 models/*.onnx -t $(INSTALL_HOME)/.local/share/autotuned/models
	install -m644 README.md -t $(INSTALL_HOME)/.local/share/autotuned
	cp -r $(ORT_DIR) $(INSTALL_HOME)/.local/share/autotuned/
	install -m644 systemd/autotuned.service systemd/autotuned@.service -t $(INSTALL_HOME)/.config/systemd/user

# The installed config names the installed models directory absolutely (tests/settings.rs runs
# this); an existing config is the user's and is kept.
install-config:
	install -d $(INSTALL_HOME)/.config/autotuned/scales
	install -m644 config/scales/*.scl -t $(INSTALL_HOME)/.config/autotuned/scales
	[ -f $(INSTALL_HOME)/.config/autotuned/autotuned.toml ] || sed 's|^dir = .*|dir = "$(INSTALL_HOME)/.local/share/autotuned/models"|' $(CONFIG) > $(INSTALL_HOME)/.config/autotuned/autotuned.toml

clean:
	cargo clean
	rm -rf $(ORT_DIR) $(VENV)

# JayAvatar: `make demo` renders the demo video, `make test` runs the tests.
# Both build whatever they need first: the Python environments and, if none is reachable, Redis.

PYTHON ?= python3.11
CORE := .venv
# The engine environments come from the engine table (jayavatar/catalog.py). The XTTS one is
# not built by default: only its tests and deployments that choose engine xtts need it.
ENVS := $(shell $(PYTHON) jayavatar/catalog.py envs --default)
TEST_ENVS := $(shell $(PYTHON) jayavatar/catalog.py envs)
PIP_FLAGS ?= -q --disable-pip-version-check
PYTEST_FLAGS ?= -q -p no:cacheprovider
CORE_PKGS := jayavatar cli jobs storage bot api
# Type-checked in the environment that runs them: the core checks the engine table's readers,
# each engine environment its own engines.
CORE_ENGINES := engines/base.py engines/calls.py engines/registry.py engines/models.py engines/voice/text.py \
	engines/model_check.py engines/media/sniff.py
LIPSYNC_PY := engines/lipsync engines/media engines/quality tests/support/quality_cases.py
VOICE_PY := engines/voice/piper.py engines/voice/match.py engines/voice/demo_voice.py \
	engines/media/audio.py

.PHONY: demo test test-all check envs chaos bench clean-envs browser

# pip runs quietly, so say what is being built and about how long a first build takes
# (downloads included; a rebuild after a change to pyproject.toml or envs/*.txt is faster).
BUILD_TIME_voice := 2-4 minutes: Piper, torch for CPU
BUILD_TIME_lipsync := 5-10 minutes: torch, mediapipe, the speech models of the quality report
BUILD_TIME_xtts := 5-10 minutes: torch, coqui-tts, transformers

envs: $(CORE)/.stamp $(foreach e,$(ENVS),.venvs/$(e)/.stamp)

$(CORE)/.stamp: pyproject.toml
	@echo "» building the core environment $(CORE) (first time: about a minute)"
	$(PYTHON) -m venv $(CORE)
	$(CORE)/bin/pip install $(PIP_FLAGS) -e ".[dev]"
	touch $@

.venvs/%/.stamp: pyproject.toml envs/%.txt
	@echo "» building the $* environment .venvs/$* (first time: $(BUILD_TIME_$*))"
	$(PYTHON) -m venv .venvs/$*
	.venvs/$*/bin/pip install $(PIP_FLAGS) -e ".[dev]" -r envs/$*.txt
	touch $@

demo: envs
	@echo "» environments ready; running the demo (first run: a minute or two on a CPU)"
	$(CORE)/bin/jayavatar demo -o out/demo.mp4

# One pytest run per environment; each collects only the test modules written for it.
# Exit code 5 (no tests collected in an environment) is not a failure.
# The dashboard test drives Debian's chromium; install it where we can (root with apt-get),
# otherwise that test skips and says why.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium chromium-driver >/dev/null; } \
		|| echo "chromium is not installed: the dashboard browser test will skip"

test: envs .venvs/xtts/.stamp browser
	$(CORE)/bin/python -m pytest $(PYTEST_FLAGS) $(ARGS) || [ $$? -eq 5 ]
	for env in $(TEST_ENVS); do \
		JAYAVATAR_TEST_ENV=$$env .venvs/$$env/bin/python -m pytest $(PYTEST_FLAGS) $(ARGS) \
			|| [ $$? -eq 5 ] || exit 1; \
	done

# Everything, slow and chaos tests included.
test-all:
	$(MAKE) test ARGS="-m 'not gpu'"

chaos: envs
	$(CORE)/bin/python -m pytest $(PYTEST_FLAGS) -m chaos tests/chaos

bench: envs
	$(CORE)/bin/python bench/pipeline.py
	.venvs/lipsync/bin/python bench/quality.py --render out/bench.mp4

check: envs
	$(CORE)/bin/ruff check .
	$(CORE)/bin/ruff format --check .
	$(CORE)/bin/mypy $(CORE_PKGS) $(CORE_ENGINES)
	.venvs/lipsync/bin/mypy $(LIPSYNC_PY)
	.venvs/voice/bin/mypy $(VOICE_PY)

clean-envs:
	rm -rf $(CORE) .venvs

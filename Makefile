# JayAvatar: `make demo` renders the demo video, `make test` runs the tests.
# Both build whatever they need first: the Python environments and, if none is reachable, Redis.

PYTHON ?= python3.11
CORE := .venv
ENVS := voice lipsync
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: demo test check envs chaos bench clean-envs

envs: $(CORE)/.stamp $(foreach e,$(ENVS),.venvs/$(e)/.stamp)

$(CORE)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(CORE)
	$(CORE)/bin/pip install $(PIP_FLAGS) -e ".[dev]"
	touch $@

.venvs/%/.stamp: pyproject.toml envs/%.txt
	$(PYTHON) -m venv .venvs/$*
	.venvs/$*/bin/pip install $(PIP_FLAGS) -e ".[dev]" -r envs/$*.txt
	touch $@

clean-envs:
	rm -rf $(CORE) .venvs

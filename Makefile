# The two commands of the README's quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
V2ARGS ?=

.PHONY: run test test-v2 test-systemd lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ffrtmp watch $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Its last line names every part of the suite that did not run here and what would run it
# (tests/parts.py and .ci/v2vm.py record them in NOT_RUN), so a machine that lacks a package
# cannot pass green in silence.
NOT_RUN := $(VENV)/not-run.jsonl

test: lint
	@rm -f $(NOT_RUN)
	@FFRTMP_NOT_RUN=$(abspath $(NOT_RUN)) $(BIN)/pytest $(ARGS) && \
	FFRTMP_NOT_RUN=$(abspath $(NOT_RUN)) $(MAKE) --no-print-directory test-v2; \
	code=$$?; $(BIN)/python .ci/not_run.py $(NOT_RUN); exit $$code

# The tests marked vm on a real cgroup v2 kernel, booted in qemu by virtme-ng (the test
# machines mount cgroup v1). Where no VM can be booted: one line saying why, and success (a
# failure under FFRTMP_REQUIRE_V2VM=1, which .ci/run sets where it installs the VM's packages).
test-v2: $(STAMP)
	$(BIN)/python .ci/v2vm.py $(V2ARGS)

# The shipped unit under a real systemd as PID 1 on the v2 kernel, installed as docs/install.md
# says (.ci/systemd_vm.py). Where no VM can be booted: one line saying why, and success.
test-systemd: $(STAMP)
	$(BIN)/python .ci/systemd_vm.py

# The shipped unit under a real systemd as PID 1 on the v2 kernel, installed as docs/install.md
# says (.ci/systemd_vm.py): about 10 minutes under emulation, so not part of `make test`;
# .ci/run runs it after. Where no VM can be booted: one line saying why, and success.
test-systemd: $(STAMP)
	$(BIN)/python .ci/systemd_vm.py

bench: $(STAMP)
	$(BIN)/python bench/scan.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

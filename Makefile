# ShareIndex: `make run` indexes a share and keeps it fresh; `make test` runs the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_PACKAGES := tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert poppler-utils libmagic1 acl fonts-noto-cjk \
	samba samba-ad-dc samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind smbclient ldap-utils \
	libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui python3-uno
SHARE ?= demo=$(CURDIR)/demo/share
DATA_DIR ?= $(CURDIR)/.data
PORT ?= 8765

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1

.PHONY: install deb run sync test bench lint clean

install: $(STAMP)

# Debian packages (OCR, PDF tools, libmagic, ACL tools) when run as root and missing.
deb:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "warning: not root, cannot install: $$missing (run: sudo apt-get install $$missing)"; fi

# torch first, pinned to the CPU build: anything unpinned pulls gigabytes of CUDA wheels.
# unstructured-inference brings a CUDA torchvision that cannot import here; nothing needs it.
$(STAMP): pyproject.toml constraints.txt
	@$(MAKE) --no-print-directory deb
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,ja]'
	$(BIN)/pip uninstall -q -y torchvision 2>/dev/null || true
	touch $(STAMP)

run: install
	$(BIN)/shareindex run --share $(SHARE) --data-dir $(DATA_DIR) --port $(PORT)

sync: install
	$(BIN)/shareindex sync --share $(SHARE) --data-dir $(DATA_DIR)

# two test processes (most tests wait on processes, files and servers more than they compute);
# TEST_WORKERS=0 runs them in this one
TEST_WORKERS ?= 2
test: install
	$(BIN)/ruff check ingest index workers tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --durations=20 -n $(TEST_WORKERS) --dist loadscope

# JSON results in bench-results/; BENCH_DOCS sets the corpus size, BENCH_BACKEND the embedding
# backend ShareIndex runs with against the LangChain peer (auto: the default configuration;
# bench_backends measures them all).
BENCH_DOCS ?= 300
BENCH_BACKEND ?= auto
bench: install
	$(BIN)/python -m bench.bench_peer --docs $(BENCH_DOCS) --backend $(BENCH_BACKEND) --out bench-results/peer.json
	$(BIN)/python -m bench.bench_backends --out bench-results/backends.json
	$(BIN)/python -m bench.bench_cuda --docs $(BENCH_DOCS) --out bench-results/cuda.json
	$(BIN)/python -m bench.bench_sync --docs $(BENCH_DOCS) --out bench-results/sync.json
	$(BIN)/python -m bench.bench_freshness --out bench-results/freshness.json
	$(BIN)/python -m bench.bench_load --out bench-results/load.json
	$(BIN)/python -m bench.bench_soak --out bench-results/soak.json
	$(BIN)/python -m bench.bench_resync --out bench-results/resync.json
	$(BIN)/python -m bench.bench_smb --docs $(BENCH_DOCS) --out bench-results/smb.json
	$(BIN)/python -m bench.bench_index --out bench-results/index.json
	$(BIN)/python -m bench.bench_retrieval --out bench-results/retrieval.json
	$(BIN)/python -m bench.bench_ocr --out bench-results/ocr.json
	$(BIN)/python -m bench.bench_office --out bench-results/office.json
	$(BIN)/python -m bench.bench_captions --out bench-results/captions.json
	$(BIN)/python -m bench.bench_celery --out bench-results/celery.json
	$(BIN)/python -m bench.bench_mcp --out bench-results/mcp.json
	$(BIN)/python -m bench.bench_cli --ref e30a766 --out bench-results/cli.json

lint: install
	$(BIN)/ruff check ingest index workers tests bench
	$(BIN)/ruff format --check ingest index workers tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .data bench-results .pytest_cache .mypy_cache .ruff_cache

# cexarb — the two commands a new user needs: `make demo` and `make test`.
# Each does the whole set-up on a fresh machine (venv, dependencies, release build of the Rust core)
# and caches it: the extension is rebuilt only when Rust sources or Cargo/pyproject files change.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
RUST_SRC := $(shell find rust -name '*.rs' 2>/dev/null) Cargo.toml pyproject.toml

.PHONY: demo test test-rust test-python bench build venv clean

demo: $(VENV)/.built
	$(VENV)/bin/cexarb demo $(DEMO_ARGS)

test: test-rust test-python

test-rust:
	cargo test --release --quiet

test-python: $(VENV)/.built
	$(PY) -m pytest

bench: $(VENV)/.built $(VENV)/.bench-deps
	cargo bench --bench book_ingest
	$(PY) -m pytest benchmarks --benchmark-only --benchmark-columns=min,median,mean,ops,rounds -p no:cacheprovider

build: $(VENV)/.built

venv: $(VENV)/.deps

$(VENV)/.deps: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "maturin>=1.7,<2" "msgspec>=0.18" "numpy>=1.26" "aiohttp>=3.9" "uvloop>=0.19" "plotly>=5.18" "tqdm>=4.66" "httptools>=0.6" \
		"pytest>=8" "pytest-asyncio>=0.23" "pytest-benchmark>=4" "hypothesis>=6.100" "ccxt==4.5.90" "protobuf>=5.29.5" "grpcio-tools==1.85.1"
	touch $@

$(VENV)/.built: $(VENV)/.deps $(RUST_SRC)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release --quiet
	touch $@

$(VENV)/.bench-deps: $(VENV)/.deps
	$(PIP) install --quiet nautilus_trader order-book sortedcontainers
	touch $@

clean:
	rm -rf $(VENV) target python/cexarb/*.so

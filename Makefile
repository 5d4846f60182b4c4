# prescreen: `make run` serves on http://127.0.0.1:8000, `make test` runs the suite.
# Both create .venv with pinned dependencies (constraints.txt) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
BENCH_STAMP := $(VENV)/.installed-bench
PIP_FLAGS := --disable-pip-version-check --no-input -q
LINT_PATHS := $(wildcard src tests bench scripts)

.PHONY: run test lint format bench-deps ocr-deps lock migrate clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "prescreen needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@mkdir -p var
	$(BIN)/prescreen serve

migrate: $(STAMP)
	$(BIN)/prescreen db upgrade

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

bench-deps: $(STAMP)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# Screening reads text in images with Debian's Tesseract (English and Arabic models); the OCR
# tests and bench/ocr_logo.py render captions with the DejaVu fonts. Installed when missing.
OCR_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-ara fonts-dejavu-core
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

ocr-deps:
	@langs="$$(tesseract --list-langs 2>/dev/null)"; \
	if echo "$$langs" | grep -qx eng && echo "$$langs" | grep -qx ara && \
		[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ]; then \
		echo "Tesseract (eng, ara) and DejaVu fonts are installed"; \
	else \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(OCR_PACKAGES) >/dev/null; \
	fi

# Re-pin every dependency (dev and bench extras included) from a fresh resolve.
lock:
	rm -rf /tmp/prescreen-lock && $(PYTHON) -m venv /tmp/prescreen-lock
	/tmp/prescreen-lock/bin/pip install $(PIP_FLAGS) -e '.[dev,bench]'
	/tmp/prescreen-lock/bin/pip freeze --exclude-editable | grep -v '^prescreen' > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

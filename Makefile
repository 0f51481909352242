# The two commands of the quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint format bench docs migration clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "mailer needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,postgres]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mailer demo

# The browser tests drive the system's Chromium; Playwright never downloads one.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Three pytest workers on two cores: many tests wait on real servers, processes and
# scheduled times, so a third worker uses what the other two leave idle (the
# suite took 9.5 minutes on two workers, 7.7 on three; docs/performance.md,
# "The test suite"). TEST_WORKERS=0 runs it in one process.
# Each worker starts with half the files in order and takes tests from the other's
# queue when it runs out, so neither idles while the other works through slow tests.
TEST_WORKERS ?= 3

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest --numprocesses=$(TEST_WORKERS) --dist=worksteal

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench
	$(BIN)/python -m bench --scale

docs: $(STAMP)
	$(BIN)/python -m mailer.config > config.example.toml
	$(BIN)/python -m mailer.cli.reference > docs/cli.md

# After a change to mailer/store/models.py: writes the next revision into
# mailer/store/migrations/versions/ (read it and correct it before committing).
migration: $(STAMP)
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what changed"'; exit 1; }
	$(BIN)/python -m mailer.store.migrate revision "$(MSG)"

clean:
	rm -rf var preview $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

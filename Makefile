# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check lint format bench bench-micro clean
.PHONY: install status logs update backup restore reload

LINT_PATHS := src tests $(wildcard bench)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/outpost serve --providers examples/providers --hosts examples/hosts.yaml \
		--allow-missing-credentials

check: $(STAMP)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

test: check
	$(BIN)/pytest -n 2 -p no:cacheprovider

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

# End to end against nginx; installs nginx and wrk with apt-get when missing.
bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-micro: $(STAMP)
	$(BIN)/pytest bench/micro -p no:cacheprovider -p no:xdist --benchmark-only \
		--benchmark-columns=min,median,mean,ops,rounds -o addopts=""

clean:
	rm -rf $(VENV) build dist src/*.egg-info

# Docker deployment (docs/deploy.md). The compose files in use come from
# COMPOSE_FILE in .env, which `make install` writes.
install:
	bash scripts/install.sh

status:
	docker compose ps

logs:
	docker compose logs --tail=200 --follow outpost

update:
	git pull --ff-only
	docker compose build --pull
	docker compose up -d

reload:
	docker compose exec outpost outpost reload

backup:
	bash scripts/backup.sh

restore:
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=backups/outpost-....tar.gz" >&2; exit 2; }
	bash scripts/restore.sh "$(BACKUP)"

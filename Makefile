# Keyward: every target provisions PostgreSQL itself unless DATABASE_URL is set (see .ci/pg).
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
PG := .ci/pg
# Use nextest when it is installed (one process per test, clear summary), else cargo test.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)

.PHONY: help run test lint fmt db db-stop db-reset migrate schema build deb bench bench-sign bench-http bench-overload test-deps node-deps api-fuzz-deps demo

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

run: ## Build (release), provision PostgreSQL, migrate and serve on http://127.0.0.1:8080
	$(CARGO) build --release --locked
	url=$$($(PG) url); DATABASE_URL="$$url" exec ./target/release/keyward serve

test: test-deps node-deps api-fuzz-deps ## Run every test (unit and integration) against a real PostgreSQL and Chromium
	url=$$($(PG) url); \
	if [ -n "$(NEXTEST)" ]; then \
	  DATABASE_URL="$$url" $(CARGO) nextest run --locked --no-fail-fast; \
	else \
	  DATABASE_URL="$$url" $(CARGO) test --locked --no-fail-fast; \
	fi

test-deps: ## Install what the tests run besides cargo (Debian's chromium, nginx, aiosmtpd, jq, curl, openssl; root only)
	@missing=""; for p in chromium:chromium nginx:nginx-light jq:jq curl:curl openssl:openssl \
	    /usr/lib/python3/dist-packages/aiosmtpd:python3-aiosmtpd; do \
	  probe="$${p%%:*}"; \
	  case "$$probe" in /*) [ -e "$$probe" ] ;; *) command -v "$$probe" >/dev/null 2>&1 ;; esac \
	    || missing="$$missing $${p#*:}"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing$$missing for the tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "the tests need:$$missing (sudo apt-get install$$missing)"; exit 1; fi

api-fuzz-deps: ## Install schemathesis (pinned, tests/openapi/requirements.txt) into .venv for the OpenAPI test
	@if [ ! -x .venv/bin/schemathesis ] || [ tests/openapi/requirements.txt -nt .venv/bin/schemathesis ]; then \
	  python3 -m venv .venv && .venv/bin/pip install --quiet --disable-pip-version-check -r tests/openapi/requirements.txt; \
	fi

node-deps: ## Install the examples' Node dependencies from their lockfiles (npm ci) and build the React example
	@for d in examples/notes-api examples/spa examples/react-bff tests/e2e; do \
	  if [ ! -d "$$d/node_modules" ] || [ "$$d/package-lock.json" -nt "$$d/node_modules/.package-lock.json" ]; then \
	    (cd "$$d" && npm ci --no-audit --no-fund --loglevel=error); \
	  fi; \
	done
	@cd examples/react-bff && if [ ! -f dist/index.html ] || [ -n "$$(find src index.html vite.config.js package-lock.json -newer dist/index.html)" ]; then \
	  npm run --silent build -- --logLevel warn; \
	fi

demo: build node-deps ## Keyward, notes-api and the example SPA together; prints the URL to open
	examples/demo.sh

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench: ## Every endpoint users feel, pinned, as ratios to the core's RSA and argon2id limits; writes docs/BENCHMARKS.md
	benches/bench.sh

bench-sign: ## Signing throughput in process: Keyward's signer vs raw OpenSSL, measured in one run
	$(CARGO) bench --locked --bench signing

bench-http: ## Token endpoint over HTTP (wrk, installed if missing) next to raw OpenSSL signing, same run
	@command -v wrk >/dev/null || { [ "$$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } \
	  || { echo "bench-http needs wrk (sudo apt-get install wrk)"; exit 1; }
	benches/token_endpoint.sh 10

bench-overload: ## Refresh at 1x and 3x capacity (open loop) while JWKS, discovery, client_credentials are probed
	benches/overload.sh 8

fmt: ## Format the code
	$(CARGO) fmt --all

build: ## Build the release binary
	$(CARGO) build --release --locked

deb: build ## A Debian package of the release binary, the systemd unit and /etc/keyward/keyward.env (target/deb/)
	deploy/deb/build target/release/keyward target/deb

db: ## Start the project-local PostgreSQL and print its URL
	@$(PG) url

db-stop: ## Stop the project-local PostgreSQL
	$(PG) stop

db-reset: ## Stop the project-local PostgreSQL and delete its data
	$(PG) reset

migrate: ## Apply pending migrations to the database
	$(CARGO) build --release --locked
	url=$$($(PG) url); DATABASE_URL="$$url" ./target/release/keyward migrate

schema: ## Regenerate src/db/schema.rs from the migrations (needs diesel_cli; arrays are CHECKed NULL-free)
	url=$$($(PG) url); base=$${url%/*}; \
	psql "$$base/postgres" -qc 'DROP DATABASE IF EXISTS keyward_schema' -c 'CREATE DATABASE keyward_schema'; \
	diesel migration run --database-url "$$base/keyward_schema"; \
	diesel print-schema --database-url "$$base/keyward_schema" \
	  | sed 's/Array<Nullable<Text>>/Array<Text>/' > src/db/schema.rs; \
	psql "$$base/postgres" -qc 'DROP DATABASE keyward_schema'

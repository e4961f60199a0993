# rade: `make demo` runs the embedded demo, `make test` sets up and passes every test.
SHELL := bash
.DEFAULT_GOAL := help
export CARGO_TARGET_DIR ?= $(HOME)/.cache/rade-target
CARGO ?= cargo

.PHONY: help deps build demo test fuzz up down bench lint fmt clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

deps: ## Install the system packages the build and tests need (apt)
	@deploy/local/deps.sh

build: deps ## Build every crate, test and bench
	$(CARGO) build --workspace --all-targets --locked

demo: deps ## Run the embedded demo: mock Kafka, simulator, pipeline, local lake
	$(CARGO) run --locked -p rade -- demo

test: deps ## Start Kafka and an S3 server, check deploy/, run every test, stop them
	deploy/local/test.sh

FUZZ_SECONDS ?= 60
fuzz: ## Fuzz the decoder for FUZZ_SECONDS (default 60): mutated and random messages of every wire format
	RADE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CARGO) test --locked -p rade-schema --test fuzz -- --nocapture

up: deps ## Start the local Kafka broker (127.0.0.1:9092)
	deploy/local/kafka.sh up

down: ## Stop the local Kafka broker
	deploy/local/kafka.sh down

bench: deps ## Criterion benches and the end-to-end harness (starts and stops Kafka)
	benches/run.sh

lint: ## rustfmt and clippy
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

clean: ## Remove local state (broker data, demo lake)
	deploy/local/kafka.sh down
	rm -rf .local demo-lake lake

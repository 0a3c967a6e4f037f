#!/usr/bin/env bash
# The soak test (not in the default test run): `kith up` and two more replicas on a PostgreSQL
# and a NATS of their own, under load, while NATS, PostgreSQL and the replicas are killed and
# restarted at random; then the logs, the JetStream streams and every projection must agree
# exactly. See services/kith/tests/soak.rs.
#
#   bash tests/soak.sh [seconds]      # default 600
#
# Needs what the test suite needs (PostgreSQL at 127.0.0.1:5432 for the test environment, NATS at
# 127.0.0.1:4222, and the postgres and nats-server programs installed, see
# scripts/ensure-services.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-600}"
case "$seconds" in
    '' | *[!0-9]*) echo "usage: bash tests/soak.sh [seconds]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/kith-target}"
# libtest rather than nextest: nextest would stop a test after its slow-timeout.
KITH_SOAK_SECONDS="$seconds" exec cargo test -p kith --test soak -- --ignored --nocapture --test-threads 1

#!/usr/bin/env bash
# What an idle `kith up` costs: CPU of the kith process and of its PostgreSQL backends over 30 s,
# in percent of one core. Uses the PostgreSQL and NATS of DATABASE_URL's server and NATS_URL (a
# scratch database and NATS namespace of its own, dropped afterwards).
#
#   cargo build --release -p kith && bash scripts/idle-cost.sh
set -euo pipefail
target="${CARGO_TARGET_DIR:-target}"
BIN="${BIN:-$target/release/kith}"
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p kith first (or set BIN)" >&2; exit 2; }
SECONDS_MEASURED="${SECONDS_MEASURED:-30}"
server="${PGHOST:-127.0.0.1}"
db="kith_idle_$$"
export DATABASE_URL="postgres://postgres@$server:5432/$db" KITH_NATS_NAMESPACE="idle$$" RUST_LOG=warn
"$BIN" up --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --no-embedded >/dev/null 2>&1 &
kith=$!
trap 'kill -TERM $kith 2>/dev/null || true; psql -h "$server" -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
sleep 12 # started, migrated, leaders elected: idle from here
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
declare -A before
for pid in $(psql -h "$server" -U postgres -Atc "SELECT pid FROM pg_stat_activity WHERE datname = '$db'"); do
    before[$pid]=$(ticks "$pid")
done
k0=$(ticks "$kith")
sleep "$SECONDS_MEASURED"
k1=$(ticks "$kith")
pg=0
for pid in "${!before[@]}"; do pg=$((pg + $(ticks "$pid") - before[$pid])); done
awk -v k=$((k1 - k0)) -v p="$pg" -v hz="$(getconf CLK_TCK)" -v s="$SECONDS_MEASURED" -v n="${#before[@]}" 'BEGIN {
    printf "idle over %d s: kith %.2f%% of a core, its %d PostgreSQL backends %.2f%%, total %.2f%%\n",
        s, 100 * k / hz / s, n, 100 * p / hz / s, 100 * (k + p) / hz / s }'

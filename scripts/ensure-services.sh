#!/usr/bin/env bash
# Makes sure the services Kith's tests talk to are up on this machine:
#   - PostgreSQL on 127.0.0.1:5432, user postgres, no password (trust)
#   - NATS with JetStream on 127.0.0.1:4222
# Starts an installed but stopped service; installs a missing one from Debian's
# packages (apt-get). Needs root (or sudo) only when it has to start or install.
#
#   bash scripts/ensure-services.sh      # check, start or install both
#   source scripts/ensure-services.sh    # only defines the functions below
#
# Environment:
#   KITH_SERVICE_WAIT     seconds to wait for a service to answer (default 30)
#   KITH_FIX_PG_AUTH=1    switch 127.0.0.1/::1 host lines of pg_hba.conf to trust when a
#                         password-less login as postgres fails (done anyway when CI is
#                         set, or when this script installed PostgreSQL itself)

KITH_PG_HOST=127.0.0.1
KITH_PG_PORT=5432
KITH_NATS_HOST=127.0.0.1
KITH_NATS_PORT=4222
KITH_NATS_STORE=/var/lib/nats-server
KITH_NATS_LOG=/var/log/nats-server.log
# Lets start-stop-daemon tell our server from another nats-server (say, one on another port).
KITH_NATS_PIDFILE=/run/kith-nats-server.pid

ks_log() { printf 'ensure-services: %s\n' "$*" >&2; }
ks_die() { printf 'ensure-services: ERROR: %s\n' "$*" >&2; return 1; }

# Runs a command as root: directly when we are root, else through sudo.
ks_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@" || sudo "$@"
    else
        ks_die "need root to run: $*"
    fi
}

ks_apt_updated=0
ks_apt_install() {
    if [ "$ks_apt_updated" -eq 0 ]; then
        ks_log "apt-get update"
        ks_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || return 1
        ks_apt_updated=1
    fi
    ks_log "apt-get install -y $*"
    ks_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null
}

# Calls "$@" once a second until it succeeds or KITH_SERVICE_WAIT seconds have passed.
ks_wait_for() {
    local waited=0 limit="${KITH_SERVICE_WAIT:-30}"
    until "$@"; do
        if [ "$waited" -ge "$limit" ]; then
            return 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

# True when something accepts TCP connections on host $1, port $2.
ks_port_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- PostgreSQL

ks_pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$KITH_PG_HOST" -p "$KITH_PG_PORT"
    else
        ks_port_open "$KITH_PG_HOST" "$KITH_PG_PORT"
    fi
}

# Newest PostgreSQL version with a cluster configuration, or nothing.
ks_pg_version() {
    # shellcheck disable=SC2012 # version folders: plain names
    ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1
}

ks_pg_start() {
    local version
    version="$(ks_pg_version)"
    [ -n "$version" ] || ks_die "no cluster under /etc/postgresql" || return 1
    if [ ! -d "/etc/postgresql/$version/main" ]; then
        ks_log "creating PostgreSQL $version cluster 'main'"
        ks_root pg_createcluster --port "$KITH_PG_PORT" "$version" main || return 1
    fi
    ks_log "starting PostgreSQL $version/main"
    # Exit status ignored: it fails when the cluster is already up (but was not answering yet).
    ks_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
}

# Sets the auth method of the 127.0.0.1 and ::1 host lines to trust (and adds such lines
# when there are none), then reloads the cluster.
ks_pg_trust_local() {
    local version hba
    version="$(ks_pg_version)"
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    [ -f "$hba" ] || ks_die "no $hba to set trust auth in" || return 1
    ks_log "setting trust auth for 127.0.0.1 and ::1 in $hba"
    ks_root sed -i -E \
        's#^([[:space:]]*host[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+(127\.0\.0\.1/32|::1/128)[[:space:]]+)[^[:space:]]+#\1trust#' \
        "$hba" || return 1
    if ! grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        ks_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba" || return 1
    fi
    ks_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
}

# True when user postgres logs in over TCP without a password.
ks_pg_login_ok() {
    command -v psql >/dev/null 2>&1 || return 0 # cannot tell without a client; assume fine
    PGCONNECT_TIMEOUT=5 psql -w -X -q -h "$KITH_PG_HOST" -p "$KITH_PG_PORT" -U postgres \
        -d postgres -c 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
    local installed_now=0
    if ks_pg_ready; then
        ks_log "PostgreSQL answers on $KITH_PG_HOST:$KITH_PG_PORT"
    else
        if [ -z "$(ks_pg_version)" ]; then
            ks_log "PostgreSQL is not installed"
            ks_apt_install postgresql || ks_die "could not install postgresql" || return 1
            installed_now=1
        fi
        ks_pg_ready || ks_pg_start || return 1
        ks_log "waiting for PostgreSQL on $KITH_PG_HOST:$KITH_PG_PORT"
        ks_wait_for ks_pg_ready ||
            ks_die "PostgreSQL did not answer on $KITH_PG_HOST:$KITH_PG_PORT within ${KITH_SERVICE_WAIT:-30}s (see /var/log/postgresql/)" ||
            return 1
        ks_log "PostgreSQL is up"
    fi

    if [ "$installed_now" -eq 1 ] || ! ks_pg_login_ok; then
        if [ "$installed_now" -eq 1 ] || [ -n "${CI:-}" ] || [ "${KITH_FIX_PG_AUTH:-0}" = 1 ]; then
            ks_pg_trust_local || return 1
            ks_wait_for ks_pg_login_ok ||
                ks_die "user postgres still cannot log in without a password on $KITH_PG_HOST:$KITH_PG_PORT" ||
                return 1
        else
            ks_die "PostgreSQL answers, but user postgres cannot log in without a password on $KITH_PG_HOST:$KITH_PG_PORT; set trust for 127.0.0.1/::1 in pg_hba.conf (or rerun with KITH_FIX_PG_AUTH=1)"
            return 1
        fi
    fi
}

# ---------------------------------------------------------------------- NATS

ks_nats_up() {
    ks_port_open "$KITH_NATS_HOST" "$KITH_NATS_PORT"
}

# The INFO line the server at 127.0.0.1:4222 greets a client with.
ks_nats_info() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" && IFS= read -r -t 2 line <&3 && printf "%s\n" "$line"' \
        _ "$KITH_NATS_HOST" "$KITH_NATS_PORT" 2>/dev/null
}

ensure_nats() {
    if ks_nats_up; then
        ks_log "something listens on $KITH_NATS_HOST:$KITH_NATS_PORT"
    else
        if [ ! -x /usr/sbin/nats-server ]; then
            ks_log "nats-server is not installed"
            ks_apt_install nats-server || ks_die "could not install nats-server" || return 1
        fi
        # The package may have started its own server (without JetStream) on install.
        if ! ks_nats_up; then
            ks_log "starting nats-server with JetStream on $KITH_NATS_HOST:$KITH_NATS_PORT"
            ks_root mkdir -p "$KITH_NATS_STORE" "$(dirname "$KITH_NATS_LOG")" || return 1
            ks_root start-stop-daemon --start --oknodo --background \
                --pidfile "$KITH_NATS_PIDFILE" --make-pidfile --exec /usr/sbin/nats-server -- \
                -a "$KITH_NATS_HOST" -p "$KITH_NATS_PORT" -js -sd "$KITH_NATS_STORE" -l "$KITH_NATS_LOG" ||
                ks_die "start-stop-daemon could not start nats-server" || return 1
        fi
        ks_log "waiting for NATS on $KITH_NATS_HOST:$KITH_NATS_PORT"
        ks_wait_for ks_nats_up ||
            ks_die "NATS did not answer on $KITH_NATS_HOST:$KITH_NATS_PORT within ${KITH_SERVICE_WAIT:-30}s (see $KITH_NATS_LOG)" ||
            return 1
    fi

    local info
    info="$(ks_nats_info || true)"
    case "$info" in
        INFO*'"jetstream":true'*)
            ks_log "NATS with JetStream answers on $KITH_NATS_HOST:$KITH_NATS_PORT" ;;
        INFO*)
            ks_die "the NATS server on $KITH_NATS_HOST:$KITH_NATS_PORT runs without JetStream; restart it with -js (e.g. nats-server -a $KITH_NATS_HOST -p $KITH_NATS_PORT -js -sd $KITH_NATS_STORE)"
            return 1 ;;
        *)
            ks_die "whatever listens on $KITH_NATS_HOST:$KITH_NATS_PORT did not greet like a NATS server"
            return 1 ;;
    esac
}

ensure_services() {
    ensure_postgres && ensure_nats
}

# Run when executed; only define the functions when sourced.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    ensure_services
fi

#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432, trust auth, user postgres) and Redis (127.0.0.1:6379)
# are up, starting them from the Debian packages when they are not. Idempotent.
# TTCQ_PG_PORT, TTCQ_PG_CLUSTER and TTCQ_REDIS_PORT override the defaults (to try the
# script beside services that are already running).
set -euo pipefail

PG_PORT="${TTCQ_PG_PORT:-5432}"
PG_CLUSTER="${TTCQ_PG_CLUSTER:-main}"
REDIS_PORT="${TTCQ_REDIS_PORT:-6379}"

check_packages() {
  local missing=()
  command -v pg_ctlcluster >/dev/null || missing+=("pg_ctlcluster (package postgresql-common)")
  command -v pg_createcluster >/dev/null || missing+=("pg_createcluster (package postgresql-common)")
  command -v pg_isready >/dev/null || missing+=("pg_isready (package postgresql-client)")
  command -v psql >/dev/null || missing+=("psql (package postgresql-client)")
  [ -n "$(ls /usr/lib/postgresql 2>/dev/null)" ] || missing+=("a PostgreSQL server (package postgresql)")
  command -v redis-server >/dev/null || missing+=("redis-server (package redis-server)")
  command -v redis-cli >/dev/null || missing+=("redis-cli (package redis-tools)")
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "services.sh: missing:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "install them with: apt-get install -y postgresql redis-server" >&2
    exit 1
  fi
}

pg_up() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

wait_for() {  # wait_for NAME CHECK: up to 30 s
  local i
  for i in $(seq 1 60); do
    if "$2"; then echo "$1: up"; return 0; fi
    sleep 0.5
  done
  echo "services.sh: $1 did not come up within 30 s" >&2
  return 1
}

pg_version() {  # the cluster's version if it exists, else the newest server installed
  local v
  for v in $(ls /etc/postgresql 2>/dev/null | sort -rV); do
    [ -d "/etc/postgresql/$v/$PG_CLUSTER" ] && { echo "$v"; return; }
  done
  ls /usr/lib/postgresql | sort -rV | head -n 1
}

start_postgres() {
  local version
  version="$(pg_version)"
  if [ ! -d "/etc/postgresql/$version/$PG_CLUSTER" ]; then
    # pg_createcluster runs initdb as the postgres user (initdb refuses root).
    pg_createcluster -p "$PG_PORT" "$version" "$PG_CLUSTER" -- --auth-local=trust --auth-host=trust
  fi
  mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
  pg_ctlcluster --skip-systemctl-redirect "$version" "$PG_CLUSTER" start
}

check_trust() {  # the tests connect as postgres without a password
  if ! psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -w -qAtc "SELECT 1" >/dev/null; then
    echo "services.sh: postgres on 127.0.0.1:$PG_PORT wants a password for user postgres;" >&2
    echo "  add 'host all postgres 127.0.0.1/32 trust' to its pg_hba.conf and reload it" >&2
    return 1
  fi
}

start_redis() {
  local dir=/var/lib/redis logdir=/var/log/redis
  mkdir -p "$dir" "$logdir" 2>/dev/null || true
  [ -w "$dir" ] || dir="$(mktemp -d)"
  [ -w "$logdir" ] || logdir="$(mktemp -d)"
  # No persistence: the broker of a test run starts empty; a lost message is the reaper's job.
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$dir" --logfile "$logdir/ci.log"
}

check_packages
pg_up || start_postgres
wait_for "postgres (127.0.0.1:$PG_PORT)" pg_up
check_trust
redis_up || start_redis
wait_for "redis (127.0.0.1:$REDIS_PORT)" redis_up

#!/usr/bin/env bash
# Starts PostgreSQL, Redis and etcd on loopback for the tests and a local cluster, installing them from Debian's
# packages when missing. Idempotent: a service that already answers is left alone. Prints the addresses as `export`
# lines (eval "$(scripts/services.sh)" to use them in a shell).
#
#   PostgreSQL  postgres://backend:backend@127.0.0.1:15432/backend   (superuser role `backend`, may create databases)
#   Redis       redis://127.0.0.1:16379
#   etcd        http://127.0.0.1:12379
#
# Data lives under $BACKEND_AI_SERVICES_DIR (default /var/tmp/backend-ai-rs/services); `scripts/services.sh stop`
# stops all three.
set -euo pipefail

dir=${BACKEND_AI_SERVICES_DIR:-/var/tmp/backend-ai-rs/services}
pg_port=15432
redis_port=16379
etcd_port=12379

log() { echo "services: $*" >&2; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] && echo "$bin"
}

install_missing() {
  local missing=()
  [ -n "$(pg_bin || true)" ] && [ -x "$(pg_bin)/postgres" ] || missing+=(postgresql)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q "${missing[@]}" >&2
  fi
}

wait_for() { # name, command...
  local name=$1
  shift
  for _ in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$name did not answer"
  return 1
}

pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p $pg_port; }
redis_ready() { [ "$(redis-cli -p $redis_port ping 2>/dev/null)" = PONG ]; }
etcd_ready() { curl -sf "http://127.0.0.1:$etcd_port/health" | grep -q true; }

start_postgres() {
  if pg_ready; then return 0; fi
  local data=$dir/postgres
  mkdir -p "$dir"
  if [ ! -s "$data/PG_VERSION" ]; then
    rm -rf "$data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
    local pw
    pw=$(mktemp)
    echo backend >"$pw"
    [ "$(id -u)" = 0 ] && chown postgres "$pw"
    as_postgres "$(pg_bin)/initdb" -D "$data" -U backend --pwfile="$pw" -A scram-sha-256 >/dev/null
    rm -f "$pw"
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$data'
max_connections = 400
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  as_postgres "$(pg_bin)/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
  wait_for postgres pg_ready
  PGPASSWORD=backend "$(pg_bin)/psql" -h 127.0.0.1 -p $pg_port -U backend -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'backend'" | grep -q 1 ||
    PGPASSWORD=backend "$(pg_bin)/createdb" -h 127.0.0.1 -p $pg_port -U backend backend
}

start_redis() {
  if redis_ready; then return 0; fi
  mkdir -p "$dir/redis"
  redis-server --bind 127.0.0.1 --port $redis_port --dir "$dir/redis" --save '' --appendonly no \
    --daemonize yes --logfile "$dir/redis/server.log" --pidfile "$dir/redis/redis.pid"
  wait_for redis redis_ready
}

start_etcd() {
  if etcd_ready; then return 0; fi
  mkdir -p "$dir/etcd"
  setsid etcd --name backend-ai-test --data-dir "$dir/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "backend-ai-test=http://127.0.0.1:$((etcd_port + 1))" \
    --unsafe-no-fsync >"$dir/etcd/server.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd/etcd.pid"
  wait_for etcd etcd_ready
}

stop_all() {
  [ -s "$dir/postgres/PG_VERSION" ] && as_postgres "$(pg_bin)/pg_ctl" -D "$dir/postgres" -m fast stop >/dev/null 2>&1 || true
  redis-cli -p $redis_port shutdown nosave >/dev/null 2>&1 || true
  [ -f "$dir/etcd/etcd.pid" ] && kill "$(cat "$dir/etcd/etcd.pid")" 2>/dev/null || true
}

case ${1:-start} in
  start)
    install_missing
    start_postgres
    start_redis
    start_etcd
    echo "export BACKEND_AI_TEST_POSTGRES=postgres://backend:backend@127.0.0.1:$pg_port/backend"
    echo "export BACKEND_AI_TEST_REDIS=redis://127.0.0.1:$redis_port"
    echo "export BACKEND_AI_TEST_ETCD=http://127.0.0.1:$etcd_port"
    ;;
  stop) stop_all ;;
  *)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac

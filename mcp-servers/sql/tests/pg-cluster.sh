#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for the tests.
#
#   pg-cluster.sh start DIR PORT   initdb into DIR (if empty), start on PORT, create database
#                                  mcp_test; prints the superuser URL on stdout
#   pg-cluster.sh stop DIR         stop it (fast shutdown)
#
# Finds initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin (Debian's postgresql
# package). As root it runs them as the `postgres` user, since initdb refuses root.
set -euo pipefail

command=${1:?usage: pg-cluster.sh start DIR PORT | stop DIR}
dir=${2:?a data directory}

bindir=""
if ! command -v pg_ctl >/dev/null 2>&1 || ! command -v initdb >/dev/null 2>&1; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  if [ -z "$bindir" ]; then
    echo "PostgreSQL is not installed: apt-get install postgresql (or set MCP_SQL_TEST_PG to a server's URL)" >&2
    exit 1
  fi
  bindir="$bindir/"
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "$command" in
  start)
    port=${3:?a port}
    mkdir -p "$dir"
    user=$(id -un)
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir"
      user=postgres
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
      # TCP connections need a password (so the tests can prove PGPASSWORD is used); the
      # superuser's is "mcp".
      printf 'mcp\n' >"$dir.pw"
      [ "$(id -u)" = 0 ] && chown postgres: "$dir.pw"
      as_owner "${bindir}initdb" -D "$dir" -U "$user" --pwfile="$dir.pw" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$dir.initdb.log" 2>&1 \
        || { cat "$dir.initdb.log" >&2; exit 1; }
      rm -f "$dir.pw"
    fi
    # Loopback only, socket in the data directory (not /var/run), quiet logs.
    as_owner "${bindir}pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c fsync=off -c full_page_writes=off" \
      start >/dev/null
    export PGPASSWORD=mcp
    psql=(as_owner "${bindir}psql" -h 127.0.0.1 -p "$port" -U "$user" -d postgres -v ON_ERROR_STOP=1 -q)
    "${psql[@]}" -At -c "SELECT 1 FROM pg_database WHERE datname = 'mcp_test'" | grep -q 1 \
      || "${psql[@]}" -c "CREATE DATABASE mcp_test"
    echo "postgres://$user:mcp@127.0.0.1:$port/mcp_test"
    ;;
  stop)
    if [ -f "$dir/postmaster.pid" ]; then
      as_owner "${bindir}pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    fi
    ;;
  *)
    echo "unknown command $command" >&2
    exit 2
    ;;
esac

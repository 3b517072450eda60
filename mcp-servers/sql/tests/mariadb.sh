#!/usr/bin/env bash
# A throwaway MariaDB server on 127.0.0.1 for the tests (Debian's mariadb-server package).
#
#   mariadb.sh start DIR PORT   install a data directory into DIR (if empty), start on PORT,
#                               create database mcp_test; prints the root URL on stdout
#   mariadb.sh stop DIR         stop it
#
# Loopback only, its socket and pid file in DIR, no binary log; root's password is "mcp" over
# TCP (the tests prove MYSQL_PWD and the read-only rules with other users).
set -euo pipefail

command=${1:?usage: mariadb.sh start DIR PORT | stop DIR}
dir=${2:?a data directory}

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "MariaDB is not installed: apt-get install mariadb-server (or set MCP_SQL_TEST_MARIADB to a server's URL)" >&2
  exit 1
fi
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)

case "$command" in
  start)
    port=${3:?a port}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    user=$(id -un)
    if [ ! -d "$dir/data/mysql" ]; then
      mariadb-install-db --no-defaults --datadir="$dir/data" --user="$user" \
        --auth-root-authentication-method=socket --skip-test-db >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; exit 1; }
    fi
    "$mariadbd" --no-defaults --datadir="$dir/data" --user="$user" --port="$port" \
      --bind-address=127.0.0.1 --skip-name-resolve --socket="$dir/sock" --pid-file="$dir/pid" \
      --skip-log-bin --innodb-buffer-pool-size=64M --innodb-log-file-size=16M \
      --log-error="$dir/error.log" >/dev/null 2>&1 &
    for _ in $(seq 1 120); do
      if mariadb --no-defaults --socket="$dir/sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
        break
      fi
      sleep 0.5
    done
    mariadb --no-defaults --socket="$dir/sock" -uroot -e "
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY 'mcp';
      GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
      CREATE DATABASE IF NOT EXISTS mcp_test;" \
      || { cat "$dir/error.log" >&2; exit 1; }
    echo "mysql://root:mcp@127.0.0.1:$port/mcp_test"
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      pid=$(cat "$dir/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    ;;
  *)
    echo "usage: mariadb.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac

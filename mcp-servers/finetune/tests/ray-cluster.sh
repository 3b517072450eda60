#!/usr/bin/env bash
# A throwaway single-node Ray cluster on 127.0.0.1 for the tests (Ray from PyPI, in the
# virtual environment RAY_ENV names).
#
#   ray-cluster.sh start DIR   start a head node with its files in DIR and its dashboard on a
#                              free port; prints the dashboard's address (export it as
#                              MCP_FINETUNE_RAY_ADDRESS) once the Jobs API answers
#   ray-cluster.sh stop DIR    stop it (`ray stop`: every Ray node of this user on the machine)
set -euo pipefail

command=${1:?usage: ray-cluster.sh start DIR | stop DIR}
dir=$(mkdir -p "${2:?a directory}" && cd "$2" && pwd)
ray="${RAY_ENV:?RAY_ENV: the virtual environment with ray[default]}/bin/ray"
[ -x "$ray" ] || { echo "no ray in $RAY_ENV: pip install -r tests/ray-requirements.txt" >&2; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "$command" in
  start)
    dashboard=$(free_port)
    # The unix sockets live under the temp dir, whose path Ray wants short.
    RAY_USAGE_STATS_ENABLED=0 "$ray" start --head --node-ip-address 127.0.0.1 \
      --port "$(free_port)" --num-cpus "$(nproc)" --include-dashboard true \
      --dashboard-host 127.0.0.1 --dashboard-port "$dashboard" \
      --temp-dir "$dir" --disable-usage-stats >"$dir/start.log" 2>&1 \
      || { cat "$dir/start.log" >&2; exit 1; }
    for _ in $(seq 1 120); do
      if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$dashboard/api/version', timeout=2)" 2>/dev/null; then
        echo "http://127.0.0.1:$dashboard"
        exit 0
      fi
      sleep 0.5
    done
    echo "Ray's dashboard did not answer on port $dashboard" >&2
    cat "$dir/start.log" >&2
    exit 1
    ;;
  stop)
    "$ray" stop --force >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: ray-cluster.sh start DIR | stop DIR" >&2
    exit 2
    ;;
esac

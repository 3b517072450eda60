#!/usr/bin/env bash
# A throwaway OpenSSH server on 127.0.0.1 for the SSH tunnel tests (Debian's openssh-server).
#
#   sshd.sh start DIR PORT   host key, a user key (DIR/id_ed25519) authorized for the current
#                            user, sshd listening on 127.0.0.1:PORT, logging to DIR/sshd.log
#   sshd.sh stop DIR         stop it
set -euo pipefail

command=${1:?usage: sshd.sh start DIR PORT | stop DIR}
dir=${2:?a directory}
sshd=$(command -v sshd || echo /usr/sbin/sshd)
if [ ! -x "$sshd" ] || ! command -v ssh-keygen >/dev/null 2>&1; then
  echo "OpenSSH is not installed: apt-get install openssh-server openssh-client" >&2
  exit 1
fi

case "$command" in
  start)
    port=${3:?a port}
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
    [ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519"
    cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
    # Privilege separation needs this directory when sshd runs as root.
    if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
    cat >"$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
LogLevel DEBUG1
CONF
    "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log"
    for _ in $(seq 1 50); do
      [ -f "$dir/sshd.pid" ] && break
      sleep 0.1
    done
    [ -f "$dir/sshd.pid" ] || { cat "$dir/sshd.log" >&2; exit 1; }
    ;;
  stop)
    [ -f "$dir/sshd.pid" ] && kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
    ;;
  *)
    echo "usage: sshd.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac

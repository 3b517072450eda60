#!/usr/bin/env bash
# pgvector for the PostgreSQL server installed from Debian's packages (mcp-docs's --store needs
# it; CREATE EXTENSION vector is then run by the first mcp-docs that connects as a superuser):
#
#   - Debian's own package where the release has one (postgresql-<major>-pgvector: trixie on);
#   - else (bookworm: its postgresql-15 has none) Debian's source package of pgvector, from
#     trixie through apt-get source, built against the server's headers and installed into it.
#
# Nothing is done when the server already has it. Usage: install-pgvector.sh [MAJOR]
# [default: the newest server under /usr/lib/postgresql].
set -euo pipefail

major=${1:-$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1)}
if [ -z "$major" ]; then
    echo "install-pgvector.sh: no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql" >&2
    exit 1
fi
if [ -f "/usr/share/postgresql/$major/extension/vector.control" ]; then
    echo "pgvector: already in PostgreSQL $major"
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if apt-cache show "postgresql-$major-pgvector" >/dev/null 2>&1; then
    $SUDO apt-get install -y -qq "postgresql-$major-pgvector" >/dev/null
    echo "pgvector: postgresql-$major-pgvector installed"
    exit 0
fi

# Built from source: the server's headers and pg_config, and dpkg-source to unpack.
$SUDO apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$major" make gcc dpkg-dev >/dev/null \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$major" make gcc dpkg-dev >/dev/null; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
# A source list of its own: the machine's sources are not changed.
# (deb822, which apt reads from a file named *.sources.)
cat >"$work/trixie.sources" <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
apt_own=(-o Dir::Etc::SourceList="$work/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$work/lists" -o Dir::Cache="$work/cache")
# (As root apt says it downloads unsandboxed: the folder is not _apt's.)
apt-get "${apt_own[@]}" update -qq 2>&1 | grep -v unsandboxed || true
(cd "$work" && apt-get "${apt_own[@]}" source -qq pgvector 2>&1 | grep -v unsandboxed || true)
source_dir=$(ls -d "$work"/pgvector-*/ 2>/dev/null | head -1 || true)
if [ -z "$source_dir" ]; then
    echo "install-pgvector.sh: Debian's source package of pgvector (trixie) could not be fetched" >&2
    exit 1
fi
pg_config="/usr/lib/postgresql/$major/bin/pg_config"
# OPTFLAGS="": no -march=native, so the library runs on any x86-64 the server runs on.
make -C "$source_dir" -s -j2 OPTFLAGS="" PG_CONFIG="$pg_config" >/dev/null
$SUDO make -C "$source_dir" -s OPTFLAGS="" PG_CONFIG="$pg_config" install >/dev/null
echo "pgvector: $(basename "$source_dir") built from Debian's source package into PostgreSQL $major"

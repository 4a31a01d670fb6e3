#!/usr/bin/env bash
# Generates the TypeScript contracts from proto/ with ts-proto (grpc-js
# services) into control-plane/src/gen/ (git-ignored: generated at set-up,
# never edited by hand). Skips the work when neither the protos nor ts-proto
# changed since the last run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/control-plane/src/gen"
PLUGIN="$ROOT/node_modules/.bin/protoc-gen-ts_proto"
command -v protoc >/dev/null || { echo "[gen-proto] ERROR: protoc not found (Debian: protobuf-compiler)" >&2; exit 1; }
[ -x "$PLUGIN" ] || { echo "[gen-proto] ERROR: $PLUGIN missing: run npm ci first" >&2; exit 1; }

mapfile -t PROTOS < <(cd "$ROOT/proto" && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
OPTS="outputServices=grpc-js,esModuleInterop=true,env=node,forceLong=number,oneof=unions-value,useExactTypes=false,outputTypeRegistry=false"
STAMP="$( (cd "$ROOT/proto" && cat "${PROTOS[@]}"; echo "$OPTS"; cat "$ROOT/node_modules/ts-proto/package.json"; protoc --version) | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/.stamp" ] && [ "$(cat "$OUT/.stamp")" = "$STAMP" ]; then
  echo "[gen-proto] TypeScript contracts up to date"
  exit 0
fi
rm -rf "$OUT"; mkdir -p "$OUT"
(cd "$ROOT/proto" && protoc --plugin=protoc-gen-ts_proto="$PLUGIN" --ts_proto_out="$OUT" --ts_proto_opt="$OPTS" "${PROTOS[@]}")
echo "$STAMP" > "$OUT/.stamp"
echo "[gen-proto] generated $(find "$OUT" -name '*.ts' | wc -l) files in control-plane/src/gen"

#!/usr/bin/env bash
# Generates the Prisma client from prisma/schema.prisma into
# node_modules/.prisma/client (git-ignored: generated at set-up, never edited
# by hand). Offline: the client uses Prisma's WASM query compiler
# (engineType = "client") and the CLI its WASM schema engine (prisma.config.ts),
# so nothing is downloaded. Skips the work when neither the schema nor Prisma
# changed since the last run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PRISMA="$ROOT/node_modules/.bin/prisma"
OUT="$ROOT/node_modules/.prisma/client"
[ -x "$PRISMA" ] || { echo "[gen-prisma] ERROR: $PRISMA missing: run npm ci first" >&2; exit 1; }

STAMP="$( (cat prisma/schema.prisma prisma.config.ts node_modules/prisma/package.json node_modules/@prisma/client/package.json) | sha256sum | cut -d' ' -f1)"
if [ -f "$OUT/.jota-stamp" ] && [ "$(cat "$OUT/.jota-stamp")" = "$STAMP" ]; then
  echo "[gen-prisma] Prisma client up to date"
  exit 0
fi
if ! log="$("$PRISMA" generate 2>&1)"; then
  echo "$log" >&2
  echo "[gen-prisma] ERROR: prisma generate failed" >&2
  exit 1
fi
echo "$STAMP" > "$OUT/.jota-stamp"
echo "[gen-prisma] generated the Prisma client in node_modules/.prisma/client"

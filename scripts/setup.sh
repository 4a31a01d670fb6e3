#!/usr/bin/env bash
# Jota's set-up, run by both README commands (`npm start`, `npm test`).
# Idempotent: each step checks first and skips what is already done, so a
# second run takes seconds. Steps: system packages -> npm packages -> pinned
# engine sources -> TypeScript contracts -> C++ build -> generated test models.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${JOTA_BUILD_DIR:-$ROOT/build}"
T0=$(date +%s%N)

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
secs_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
step_start() { STEP_T0=$(date +%s%N); }
step_end() { printf '[setup] %-22s %6ss\n' "$1" "$(secs_since "$STEP_T0")"; }

# --- 1. system packages (Debian) -------------------------------------------
APT_PACKAGES=(
  cmake ninja-build ccache g++ git pkg-config         # C++ toolchain
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev  # gRPC + protoc
  libgtest-dev                                            # C++ tests
  docker-compose                                          # validates docker-compose.yml (no engine runs here)
  postgresql                                              # tests run the database suites on a real PostgreSQL too
  redis-server                                            # job queues (BullMQ); started privately per data dir unless REDIS_URL is set
)
step_start
python_ok() { "$1" -c 'import numpy' >/dev/null 2>&1; }
PYTHON="${JOTA_PYTHON:-python3}"
if ! python_ok "$PYTHON"; then
  # The image's python3 has numpy; a bare machine gets Debian's.
  APT_PACKAGES+=(python3 python3-numpy)
  PYTHON=/usr/bin/python3
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"
  else die "missing Debian packages: ${missing[*]}. Install them as root: apt-get update && apt-get install -y ${missing[*]}"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq || die "apt-get update failed (is Debian's archive reachable?)"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi
python_ok "$PYTHON" || die "$PYTHON has no numpy (needed to generate the test models)"
step_end "system packages"

# --- 2. npm packages ---------------------------------------------------------
step_start
NPM_STAMP="node_modules/.jota-npm-stamp"
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ ! -f "$NPM_STAMP" ] || [ "$(cat "$NPM_STAMP")" != "$want" ]; then
  log "npm ci"
  # @prisma/client's postinstall runs `prisma -v`, which loads prisma.config.ts and opens the embedded
  # database of ./data, and then never exits (the CLI leaves the database open): skip it. The client is
  # generated below (gen-prisma.sh) either way.
  PRISMA_SKIP_POSTINSTALL_GENERATE=1 npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed (is the npm registry reachable?)"
  echo "$want" > "$NPM_STAMP"
fi
step_end "npm packages"

# --- 3. engine sources (llama.cpp, whisper.cpp from npm tarballs) ------------
step_start
bash scripts/fetch-sources.sh
step_end "engine sources"

# --- 4. TypeScript contracts from proto/ ----------------------------------------
step_start
bash scripts/gen-proto.sh
bash scripts/gen-prisma.sh
step_end "TypeScript contracts"

# --- 5. C++ build: engines, their tests, reference tools ----------------------
step_start
CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DJOTA_BUILD_TESTS=ON -DJOTA_BUILD_REFERENCE_TOOLS=ON)
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  log "configuring $BUILD_DIR"
  cmake -S . -B "$BUILD_DIR" "${CMAKE_ARGS[@]}" >"$BUILD_DIR.configure.log" 2>&1 \
    || { tail -30 "$BUILD_DIR.configure.log" >&2; die "cmake configure failed (full log: $BUILD_DIR.configure.log)"; }
fi
# Ninja rebuilds only what changed; a no-op takes about a second.
if ! cmake --build "$BUILD_DIR" -j "$(nproc)" >"$BUILD_DIR.build.log" 2>&1; then
  grep -E "error|Error" "$BUILD_DIR.build.log" | head -30 >&2 || true
  die "C++ build failed (full log: $BUILD_DIR.build.log)"
fi
step_end "C++ build"

# --- 6. generated test models ---------------------------------------------------
step_start
"$PYTHON" scripts/models/generate_test_models.py --out models/test || die "test model generation failed"
step_end "test models"

log "done in $(secs_since "$T0")s"

#!/usr/bin/env bash
# Fetches the pinned llama.cpp and whisper.cpp sources without internet access
# beyond the npm registry: both ship, unmodified, inside npm packages.
#   llama.cpp   <- node-llama-cpp@3.22.1  (a git bundle: package/llama/gitRelease.bundle)
#   whisper.cpp <- nodejs-whisper@0.3.1   (the tree itself: package/cpp/whisper.cpp)
# Tarball checksums are verified before anything is unpacked. Idempotent: a
# stamp file records what was unpacked, and a second run does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${JOTA_THIRD_PARTY_DIR:-$ROOT/third_party}"
CACHE="$DEST/.tarballs"

LLAMA_PKG="node-llama-cpp@3.22.1";  LLAMA_SHA1="e908932762f21939024263d58f1d6dc3e88b23e6"
WHISPER_PKG="nodejs-whisper@0.3.1"; WHISPER_SHA1="10caee39336d36663fc5dbaf696343350236c5c8"

log() { printf '[fetch-sources] %s\n' "$*" >&2; }
die() { printf '[fetch-sources] ERROR: %s\n' "$*" >&2; exit 1; }

# npm pack into the cache (not npm install: node-llama-cpp's postinstall downloads binaries).
fetch_tarball() { # pkg sha1 -> prints tarball path
  local pkg="$1" sha="$2" name file
  name="${pkg%@*}"; file="$CACHE/${name}-${pkg##*@}.tgz"
  if [ ! -f "$file" ] || [ "$(sha1sum "$file" | cut -d' ' -f1)" != "$sha" ]; then
    mkdir -p "$CACHE"; rm -f "$file"
    log "downloading $pkg from the npm registry"
    (cd "$CACHE" && npm pack --silent "$pkg" >/dev/null) \
      || die "npm pack $pkg failed: the npm registry must be reachable (or put the tarball at $file)"
  fi
  local got; got="$(sha1sum "$file" | cut -d' ' -f1)"
  [ "$got" = "$sha" ] || die "$file: sha1 $got, expected $sha (tampered or wrong version); delete it and retry"
  printf '%s' "$file"
}

stamp_ok() { [ -f "$1/.jota-source" ] && [ "$(cat "$1/.jota-source")" = "$2" ]; }

LLAMA_DIR="$DEST/llama.cpp"
if stamp_ok "$LLAMA_DIR" "$LLAMA_SHA1"; then
  log "llama.cpp present ($LLAMA_PKG)"
else
  tgz="$(fetch_tarball "$LLAMA_PKG" "$LLAMA_SHA1")"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp" package/llama/gitRelease.bundle || die "$tgz has no package/llama/gitRelease.bundle"
  rm -rf "$LLAMA_DIR"
  git -c advice.detachedHead=false clone --quiet "$tmp/package/llama/gitRelease.bundle" "$LLAMA_DIR" || die "git clone of the llama.cpp bundle failed"
  echo "$LLAMA_SHA1" > "$LLAMA_DIR/.jota-source"
  log "llama.cpp unpacked at $LLAMA_DIR ($(git -C "$LLAMA_DIR" describe --tags --always 2>/dev/null))"
fi

WHISPER_DIR="$DEST/whisper.cpp"
if stamp_ok "$WHISPER_DIR" "$WHISPER_SHA1"; then
  log "whisper.cpp present ($WHISPER_PKG)"
else
  tgz="$(fetch_tarball "$WHISPER_PKG" "$WHISPER_SHA1")"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  tar -xzf "$tgz" -C "$tmp" package/cpp/whisper.cpp || die "$tgz has no package/cpp/whisper.cpp"
  rm -rf "$WHISPER_DIR"; mkdir -p "$DEST"
  mv "$tmp/package/cpp/whisper.cpp" "$WHISPER_DIR"
  echo "$WHISPER_SHA1" > "$WHISPER_DIR/.jota-source"
  log "whisper.cpp unpacked at $WHISPER_DIR"
fi

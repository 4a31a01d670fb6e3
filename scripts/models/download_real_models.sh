#!/usr/bin/env bash
# Downloads the recommended real (small) models for Jota from Hugging Face into
# models/real/ and verifies each file's sha256 before it is used:
#
#   chat     Qwen2.5-0.5B-Instruct, Q8_0 GGUF (qwen2 arch, ChatML)   ~645 MiB  -> JOTA_MODEL
#   embed    bge-small-en-v1.5, Q8_0 GGUF (bert arch, CLS pooling)   ~35 MiB   -> JOTA_EMBED_MODEL
#   whisper  whisper base.en, ggml f16 (tiny.en with --whisper tiny.en) ~142 MiB -> JOTA_WHISPER_MODEL
#
# Usage: scripts/models/download_real_models.sh [chat] [embed] [whisper] [--whisper base.en|tiny.en]
#        (no names = all three). Idempotent: verified files are not downloaded again.
# Env:   JOTA_REAL_MODELS_DIR (default <repo>/models/real), HF_ENDPOINT (default
#        https://huggingface.co, e.g. a mirror), JOTA_CONNECT_TIMEOUT (default 10 s).
#
# Checksums: the sha256 values below are those of the files as published on Hugging
# Face (their Git-LFS object ids, shown as "SHA256" on each file's page). They were
# not computed here (no internet when this was written) but taken from public
# projects that pin the same URLs: Qwen2.5 q8_0 (675710816 bytes) and whisper
# base.en were each confirmed by two independent pins; bge-small q8_0 and tiny.en
# by one. The whisper files are also checked against the SHA-1 that whisper.cpp
# itself publishes (third_party/whisper.cpp/models/README.md). A mismatch is fatal:
# if upstream re-uploads a file, check it and update the value here.
#
# Without internet access this fails fast (connect timeout) and prints what to
# download by hand and which environment variables to set. For tests and offline
# work use scripts/models/generate_test_models.py instead (random weights).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${JOTA_REAL_MODELS_DIR:-$ROOT/models/real}"
HF="${HF_ENDPOINT:-https://huggingface.co}"
CONNECT_TIMEOUT="${JOTA_CONNECT_TIMEOUT:-10}"

log() { printf '[download-models] %s\n' "$*"; }
die() { printf '[download-models] ERROR: %s\n' "$*" >&2; exit 1; }

WHISPER_VARIANT=base.en
want=()
while [ $# -gt 0 ]; do
  case "$1" in
    chat|embed|whisper) want+=("$1") ;;
    --whisper) shift; WHISPER_VARIANT="${1:-}" ;;
    --whisper=*) WHISPER_VARIANT="${1#--whisper=}" ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (expected chat, embed, whisper, --whisper base.en|tiny.en)" ;;
  esac
  shift
done
[ ${#want[@]} -gt 0 ] || want=(chat embed whisper)

# name | env var | file | repo path (under $HF) | sha256 | sha1 (or -) | bytes (or -)
CHAT="chat|JOTA_MODEL|qwen2.5-0.5b-instruct-q8_0.gguf|Qwen/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/qwen2.5-0.5b-instruct-q8_0.gguf|ca59ca7f13d0e15a8cfa77bd17e65d24f6844b554a7b6c12e07a5f89ff76844e|-|675710816"
EMBED="embed|JOTA_EMBED_MODEL|bge-small-en-v1.5-q8_0.gguf|CompendiumLabs/bge-small-en-v1.5-gguf/resolve/main/bge-small-en-v1.5-q8_0.gguf|ec38e8da142596baa913124ae50550de284b6916bf59577ef2f0cb9660c2f514|-|-"
case "$WHISPER_VARIANT" in
  base.en) WHISPER="whisper|JOTA_WHISPER_MODEL|ggml-base.en.bin|ggerganov/whisper.cpp/resolve/main/ggml-base.en.bin|a03779c86df3323075f5e796cb2ce5029f00ec8869eee3fdfb897afe36c6d002|137c40403d78fd54d454da0f9bd998f78703390c|-" ;;
  tiny.en) WHISPER="whisper|JOTA_WHISPER_MODEL|ggml-tiny.en.bin|ggerganov/whisper.cpp/resolve/main/ggml-tiny.en.bin|921e4cf8686fdd993dcd081a5da5b6c365bfde1162e72b08d75ac75289920b1f|c78c86eb1a8faa21b369bcd33207cc90d64ae9df|-" ;;
  *) die "--whisper must be base.en or tiny.en" ;;
esac

entry_for() { case "$1" in chat) echo "$CHAT" ;; embed) echo "$EMBED" ;; whisper) echo "$WHISPER" ;; esac; }

verify() { # file sha256 sha1 -> 0 if the file matches
  local f="$1" sha256="$2" sha1="$3"
  [ -f "$f" ] || return 1
  [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sha256" ] || return 1
  if [ "$sha1" != "-" ]; then [ "$(sha1sum "$f" | cut -d' ' -f1)" = "$sha1" ] || return 1; fi
  return 0
}

manual_help() {
  {
    echo
    echo "Cannot reach $HF (no internet access?). Download these files by hand on a"
    echo "machine with access, copy them into $DEST/, then re-run this script to verify"
    echo "them (or set the variables below directly):"
    for n in "${want[@]}"; do
      IFS='|' read -r _ var file path sha256 _ _ <<<"$(entry_for "$n")"
      echo "  $HF/$path"
      echo "      sha256 $sha256"
      echo "      export $var=$DEST/$file"
    done
    echo
    echo "For tests without real weights: python3 scripts/models/generate_test_models.py"
    echo "(writes models/test/{tiny-chat,tiny-embed,bench-chat}.gguf and tiny-whisper.bin)."
  } >&2
}

command -v curl >/dev/null || die "curl is required"
command -v sha256sum >/dev/null || die "sha256sum is required"
mkdir -p "$DEST"

# Which files are still missing (or do not verify)?
todo=()
for n in "${want[@]}"; do
  IFS='|' read -r _ var file path sha256 sha1 _ <<<"$(entry_for "$n")"
  if verify "$DEST/$file" "$sha256" "$sha1"; then
    log "$file present (sha256 ok)"
  else
    todo+=("$n")
  fi
done

if [ ${#todo[@]} -gt 0 ]; then
  # Fail fast when offline: one cheap request with a short connect timeout.
  if ! curl -sS -o /dev/null --connect-timeout "$CONNECT_TIMEOUT" --max-time $((CONNECT_TIMEOUT + 10)) -I "$HF" 2>/dev/null; then
    want=("${todo[@]}")
    manual_help
    die "no connection to $HF within ${CONNECT_TIMEOUT}s"
  fi
  for n in "${todo[@]}"; do
    IFS='|' read -r _ var file path sha256 sha1 bytes <<<"$(entry_for "$n")"
    part="$DEST/$file.part"
    log "downloading $HF/$path"
    # -C - resumes an interrupted .part file; --fail turns HTTP errors into exit codes.
    if ! curl -fL --connect-timeout "$CONNECT_TIMEOUT" --retry 3 --retry-delay 2 -C - \
         --progress-bar -o "$part" "$HF/$path"; then
      want=("$n"); manual_help
      die "download of $file failed (partial data kept in $part; re-run to resume)"
    fi
    size="$(stat -c %s "$part")"
    if [ "$bytes" != "-" ] && [ "$size" != "$bytes" ]; then
      rm -f "$part"; die "$file: size $size != expected $bytes; deleted, re-run to retry"
    fi
    if ! verify "$part" "$sha256" "$sha1"; then
      got="$(sha256sum "$part" | cut -d' ' -f1)"
      rm -f "$part"
      die "$file: sha256 $got does not match the pinned $sha256 (corrupt download or upstream changed the file); deleted"
    fi
    mv -f "$part" "$DEST/$file"
    log "$file downloaded and verified"
  done
fi

echo
echo "# Models ready. Point Jota at them with:"
for n in "${want[@]}"; do
  IFS='|' read -r _ var file _ _ _ _ <<<"$(entry_for "$n")"
  echo "export $var=$DEST/$file"
done

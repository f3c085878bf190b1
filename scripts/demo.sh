#!/usr/bin/env bash
# A local demonstration of one Amanah node: identity, three tiers of collections, bilingual
# metadata, verified read-back, integrity check and redaction. Everything lives in a temporary
# folder that is removed at the end (pass --keep to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."
AMANAH=.venv/bin/amanah
KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/amanah-demo.XXXXXX")
[ $KEEP = 1 ] || trap 'rm -rf "$WORK"' EXIT
export AMANAH_HOME="$WORK/node-a" AMANAH_PASSPHRASE="demo passphrase, not for real use"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Create a node (identity sealed under a passphrase)"
$AMANAH init --name "Sudan Archive (demo)"
$AMANAH id --json

step "Create collections in the three tiers"
$AMANAH collection create "Public reports" --tier public
$AMANAH collection create "Partner evidence" --tier trusted
$AMANAH collection create "Witness statements" --tier closed

step "Add evidence with paired Arabic/English metadata"
mkdir -p "$WORK/evidence/photos"
head -c 3000000 /dev/urandom > "$WORK/evidence/video.mp4"
printf 'Statement of witness 7, recorded 2024-05-01.\n' > "$WORK/evidence/statement.txt"
for i in 1 2 3; do head -c 20000 /dev/urandom > "$WORK/evidence/photos/photo-$i.jpg"; done
$AMANAH add "Witness statements" "$WORK/evidence/statement.txt" \
  --title "Witness statement 7" --title-ar "إفادة الشاهد ٧" \
  --captured-at 2024-05-01T10:00:00Z --tag testimony --tag "شهادة"
$AMANAH add "Partner evidence" "$WORK/evidence/video.mp4" "$WORK/evidence/photos" \
  --title "Market shelling" --title-ar "قصف السوق" --source-url https://example.org/v/1
$AMANAH ls "Partner evidence"

step "Read an item back: every block and the original's SHA-256 verified"
ITEM=$($AMANAH ls "Partner evidence" --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
$AMANAH get "$ITEM" -o "$WORK/restored.mp4"
cmp "$WORK/evidence/video.mp4" "$WORK/restored.mp4" && echo "restored file is identical to the original"

step "Nothing readable of a closed item is stored in the clear"
if grep -rqa "witness 7" "$AMANAH_HOME"; then echo "FOUND PLAINTEXT (bug)"; exit 1; else echo "no plaintext found under $AMANAH_HOME"; fi

step "Verify everything: hashes, signatures, the hash chain"
$AMANAH verify

step "Redact an item (signed tombstone; content and metadata erased)"
$AMANAH redact "$ITEM" --reason "consent withdrawn by the person filmed"
$AMANAH collection show "Partner evidence"
$AMANAH verify

step "Back up the identity (with the partners, all a seized node needs to come back)"
$AMANAH identity export "$WORK/identity.backup"
echo
echo "Demo complete. Replication between nodes is not built yet (see README, 'Status')."

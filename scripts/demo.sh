#!/usr/bin/env bash
# A local demonstration: three Amanah nodes on this machine (127.0.0.1) replicate an archive,
# and the owner's node comes back from its identity backup after its server is "seized".
# Everything lives in a temporary folder removed at the end (pass --keep to keep it).
set -euo pipefail
cd "$(dirname "$0")/.."
AMANAH=$PWD/.venv/bin/amanah
PY=$PWD/.venv/bin/python
KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/amanah-demo.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ $KEEP = 1 ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
export AMANAH_PASSPHRASE="demo passphrase, not for real use"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
node() { local n=$1; shift; AMANAH_HOME="$WORK/$n" "$AMANAH" "$@"; }
json() { "$PY" -c "import json,sys; print(json.load(sys.stdin)$1)"; }
port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "Three organisations each create a node (identity sealed under a passphrase)"
declare -A ID PORT
for n in sudan syria yazidi; do
  node $n init --name "$n archive (demo)" >/dev/null
  ID[$n]=$(node $n id --json | json '["peer_id"]'); PORT[$n]=$(port)
  echo "$n: ${ID[$n]}"
done

step "Each trusts the other two (by peer id; nobody else can connect)"
for a in sudan syria yazidi; do for b in sudan syria yazidi; do
  [ $a = $b ] || node $a peer add "${ID[$b]}" --addr "/ip4/127.0.0.1/tcp/${PORT[$b]}" --name $b >/dev/null
done; done
node sudan peer list

step "Start the three daemons"
for n in sudan syria yazidi; do
  AMANAH_HOME="$WORK/$n" "$AMANAH" run --listen "/ip4/127.0.0.1/tcp/${PORT[$n]}" --http 127.0.0.1:0 \
    --no-mdns > "$WORK/$n.out" 2> "$WORK/$n.log" &
  PIDS+=($!)
done
for n in sudan syria yazidi; do
  for _ in $(seq 100); do grep -q ready "$WORK/$n.out" 2>/dev/null && break; sleep 0.1; done
done

step "The Sudanese archive collects evidence in a closed and a trusted collection"
node sudan collection create "Witness statements" --tier closed >/dev/null
node sudan collection create "Partner evidence" --tier trusted >/dev/null
mkdir -p "$WORK/evidence/photos"
head -c 3000000 /dev/urandom > "$WORK/evidence/video.mp4"
printf 'Statement of witness 7, recorded 2024-05-01.\n' > "$WORK/evidence/statement.txt"
for i in 1 2 3; do head -c 20000 /dev/urandom > "$WORK/evidence/photos/photo-$i.jpg"; done
node sudan add "Witness statements" "$WORK/evidence/statement.txt" \
  --title "Witness statement 7" --title-ar "إفادة الشاهد ٧" --captured-at 2024-05-01T10:00:00Z
node sudan add "Partner evidence" "$WORK/evidence/video.mp4" "$WORK/evidence/photos" \
  --title "Market shelling" --title-ar "قصف السوق" --source-url https://example.org/v/1

step "It grants copies: both partners hold the closed set (ciphertext only); Syria may read the trusted one"
node sudan share "Witness statements" syria
node sudan share "Witness statements" yazidi
node sudan share "Partner evidence" syria --read
node sudan sync --wait --timeout 60
node sudan status

step "Partners verify what they hold, without any key"
node yazidi verify
STATEMENT=$(node sudan ls "Witness statements" --json | json '[0]["id"]')
node yazidi get "$STATEMENT" -o "$WORK/should-not-exist" || echo "(as expected: Yazidi holds it but cannot read it)"
VIDEO=$(node sudan ls "Partner evidence" --json | json '[0]["id"]')
node syria get "$VIDEO" -o "$WORK/syria-copy.mp4"

step "The Sudanese server is seized: its node and its data are gone"
node sudan identity export "$WORK/sudan.backup" >/dev/null
kill "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
rm -rf "$WORK/sudan"
echo "deleted $WORK/sudan"

step "On a new machine: restore the identity from the offline backup, sync from the partners"
node sudan-new init --restore "$WORK/sudan.backup"
node sudan-new sync --wait --timeout 60
node sudan-new collection list
node sudan-new get "$STATEMENT" -o "$WORK/restored-statement.txt"
cmp "$WORK/evidence/statement.txt" "$WORK/restored-statement.txt" && echo "the witness statement is back, byte for byte"
node sudan-new verify
echo
echo "Demo complete."

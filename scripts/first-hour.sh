#!/bin/sh
# The README's "First hour" walk-through, command for command: this file is its checked copy
# (crates/kith/tests/first_hour.rs runs it). If you change one, change the other.
#
# The README uses two terminals, Alice's and Bob's; here both are this one shell, in the order
# the README gives. Only these first lines are not in the README: they pick the kith binary
# (KITH_BIN, default: `kith` on PATH), work in a fresh directory instead of /tmp/first-hour,
# and stop both nodes however the script ends, waiting until they have.
#
# KITH_BIN is put on PATH as `kith` (a link in the work directory), as the README asks, rather
# than wrapped in a shell function: a function started with `&` runs in a subshell, so `$!`
# would be the subshell's pid, and `kill "$ALICE_NODE"` would leave the node running.
#
#   cargo build --release && KITH_BIN=target/release/kith scripts/first-hour.sh
set -eu
WORK=$(mktemp -d)
if [ -n "${KITH_BIN:-}" ]; then
  mkdir "$WORK/.bin"
  ln -s "$(cd "$(dirname "$KITH_BIN")" && pwd)/$(basename "$KITH_BIN")" "$WORK/.bin/kith"
  PATH=$WORK/.bin:$PATH
fi
cd "$WORK"
trap 'kill ${ALICE_NODE:-} ${BOB_NODE:-} 2>/dev/null || true; wait || true' EXIT

# --- 1. Two nodes, linked by a ticket ---
# terminal 1 (Alice)
kith --data alice up --listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 --chat-listen 127.0.0.1:0 > alice.log 2>&1 &
ALICE_NODE=$!
until kith --data alice status > /dev/null 2>&1; do sleep 0.2; done
kith --data alice ticket > ticket.txt
# terminal 2 (Bob)
kith --data bob up --listen 127.0.0.1:0 --peer-listen 127.0.0.1:0 --chat-listen 127.0.0.1:0 > bob.log 2>&1 &
BOB_NODE=$!
until kith --data bob status > /dev/null 2>&1; do sleep 0.2; done
kith --data bob connect "$(cat ticket.txt)"
kith --data bob peers
ALICE=$(kith --data bob peers | awk '{print $1; exit}')
kith --data bob ping "$ALICE"

# --- 2. A file, shared by Alice and fetched by Bob ---
# terminal 1 (Alice)
echo 'Hello Bob, this is Alice.' > hello.txt
kith --data alice file put hello.txt > hello.hash
kith --data alice file share "$(cat hello.hash)"
# terminal 2 (Bob)
kith --data bob file get "$(cat hello.hash)" --from "$ALICE" -o from-alice.txt
cat from-alice.txt

# --- 3. Encrypted custody: Alice keeps a copy of Bob's file that she cannot read ---
# terminal 2 (Bob)
echo 'Bob: the key is under the mat.' > plans.txt
echo 'correct horse battery staple' > password.txt && chmod 600 password.txt
kith --data bob persist plans.txt --password-file password.txt --to "$ALICE"
PLANS=$(kith --data bob file hash plans.txt)
kith --data bob file rm "$PLANS" && rm plans.txt
kith --data bob retrieve "$PLANS" --password-file password.txt --from "$ALICE" -o plans.txt
cat plans.txt

# --- 4. Chat: a channel and a direct message ---
# terminal 1 (Alice)
kith --data alice chat join lobby
# terminal 2 (Bob)
until kith --data bob chat channels | grep -q lobby; do sleep 0.2; done
kith --data bob chat join lobby
kith --data bob chat say lobby 'hi Alice, Bob here'
kith --data bob id | awk '/^node id:/ {print $3}' > bob.node
# terminal 1 (Alice)
until kith --data alice chat read lobby | grep -q 'Bob here'; do sleep 0.2; done
kith --data alice chat read lobby
kith --data alice chat send "$(cat bob.node)" 'just between us, Bob'
# terminal 2 (Bob)
until kith --data bob chat read | grep -q 'just between us'; do sleep 0.2; done
kith --data bob chat read

# --- 5. Stop both nodes ---
# terminal 1 (Alice)
kill "$ALICE_NODE"
# terminal 2 (Bob)
kill "$BOB_NODE"

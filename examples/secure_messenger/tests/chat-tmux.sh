#!/usr/bin/env bash
# Drives `secure_messenger chat` in real terminals: a tmux session with one pane per
# user, keys typed with `send-keys`, screens read with `capture-pane`. Alice types her
# passphrase at the no-echo prompt (it must not appear on screen); Bob's comes from the
# environment. Installs tmux from the Debian packages if it is missing.
set -euo pipefail
cd "$(dirname "$0")/../../.."

if ! command -v tmux >/dev/null 2>&1; then
  echo "tmux not found: installing it (apt-get install tmux)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq tmux
fi

cargo build -q -p relay-server --bin relay-server -p secure_messenger --bin secure_messenger
bin="${CARGO_TARGET_DIR:-target}/debug"
bin=$(cd "$bin" && pwd)

work=$(mktemp -d)
session="sm-chat-$$"
relay_pid=""
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null || true
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A relay on a free port with a temporary SQLite file.
(cd "$work" && exec env RELAY_LISTEN=127.0.0.1:0 RELAY_STORAGE=sqlite \
  RELAY_SQLITE_PATH="$work/relay.sqlite3" RELAY_LOG_FORMAT=json "$bin/relay-server") \
  > "$work/relay.log" 2>&1 &
relay_pid=$!
addr=""
for _ in $(seq 1 300); do
  addr=$(grep -o '"addr":"[^"]*"' "$work/relay.log" | head -n1 | cut -d'"' -f4 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "relay did not start:"; cat "$work/relay.log"; exit 1; }
relay="http://$addr"

sm() { # sm USER ARGS...
  local user=$1; shift
  SECURE_MESSENGER_HOME="$work/$user" SECURE_MESSENGER_PASSPHRASE="pass-$user" "$bin/secure_messenger" "$@"
}
for user in alice bob; do
  sm "$user" init > /dev/null
  sm "$user" register --relay "$relay" --name "$user" > /dev/null
done

screen() { tmux capture-pane -p -t "$1"; }
wait_screen() { # wait_screen PANE TEXT
  for _ in $(seq 1 300); do
    if screen "$1" | grep -qF -- "$2"; then return 0; fi
    sleep 0.1
  done
  echo "chat-tmux: pane $1 never showed: $2"
  echo "--- pane $1:"; screen "$1"
  exit 1
}

alice_pane=$(tmux new-session -d -P -F '#{pane_id}' -s "$session" -x 160 -y 40 \
  "env SECURE_MESSENGER_HOME='$work/alice' '$bin/secure_messenger' chat bob; sleep 30")
bob_pane=$(tmux split-window -P -F '#{pane_id}' -t "$session" \
  "env SECURE_MESSENGER_HOME='$work/bob' SECURE_MESSENGER_PASSPHRASE=pass-bob '$bin/secure_messenger' chat alice; sleep 30")

wait_screen "$alice_pane" "passphrase for"
tmux send-keys -t "$alice_pane" "pass-alice" Enter
wait_screen "$alice_pane" "chatting with bob"
if screen "$alice_pane" | grep -qF "pass-alice"; then
  echo "chat-tmux: the passphrase was echoed"; screen "$alice_pane"; exit 1
fi
wait_screen "$bob_pane" "chatting with alice"

tmux send-keys -t "$alice_pane" "hello bob, typed in a terminal" Enter
wait_screen "$bob_pane" "alice: hello bob, typed in a terminal"
wait_screen "$alice_pane" "you → bob: hello bob, typed in a terminal"

tmux send-keys -t "$bob_pane" "hi alice, I see you" Enter
wait_screen "$alice_pane" "bob: hi alice, I see you"
tmux send-keys -t "$alice_pane" "great, bye" Enter
wait_screen "$bob_pane" "alice: great, bye"

# End of input (Ctrl-D) ends the chat cleanly; the store keeps the conversation.
tmux send-keys -t "$bob_pane" C-d
for _ in $(seq 1 100); do
  pgrep -f "secure_messenger chat alice" > /dev/null || break
  sleep 0.1
done
if pgrep -f "secure_messenger chat alice" > /dev/null; then
  echo "chat-tmux: chat did not exit on end of input"; exit 1
fi
sm bob history alice | grep -qF "alice: great, bye"

echo "--- alice's terminal:"; screen "$alice_pane" | sed '/^$/d'
echo "--- bob's terminal:"; screen "$bob_pane" | sed '/^$/d'
echo "chat-tmux: passed"

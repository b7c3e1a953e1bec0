#!/usr/bin/env bash
# A throw-away sshd on loopback for the remote tests and bench (tests/remote.rs,
# benches/remote.rs): run as the current user, on a free high port, with its own host
# key and a key pair made for the test, every file in DIR.
#
#   scripts/setup-sshd.sh DIR [OWNER_PID]   → starts it; prints KEY=VALUE lines:
#       PHASETOP_SSH=ssh -F DIR/ssh_config   (the host alias is "phasetop-test")
#       SSHD_PID=…  SSHD_PORT=…
#   kill "$(cat DIR/sshd.pid)"     → stops it (done by itself once OWNER_PID, by default
#                                    the caller, has exited)
#
# Installs openssh-server with apt-get when sshd is missing and we may (root). Exits 77,
# saying why on stderr, only where sshd truly cannot run here.
set -euo pipefail
dir=${1:?usage: setup-sshd.sh DIR [OWNER_PID]}
owner=${2:-$PPID}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"
skip() { echo "setup-sshd: $*" >&2; exit 77; }

sshd=$(command -v sshd || true)
[ -z "$sshd" ] && [ -x /usr/sbin/sshd ] && sshd=/usr/sbin/sshd
if [ -z "$sshd" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup-sshd: installing openssh-server" >&2
    (apt-get install -y -q openssh-server || { apt-get update -q && apt-get install -y -q openssh-server; }) >"$dir/apt.log" 2>&1 \
      || skip "sshd is not installed and apt-get could not install openssh-server (see $dir/apt.log)"
    sshd=/usr/sbin/sshd
  else
    skip "sshd is not installed (apt-get install openssh-server) and this user cannot install it"
  fi
fi
command -v ssh >/dev/null || skip "no ssh client (apt-get install openssh-client)"
command -v ssh-keygen >/dev/null || skip "no ssh-keygen"

rm -f "$dir/host_key" "$dir/host_key.pub" "$dir/client_key" "$dir/client_key.pub"
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" -C phasetop-test-host
ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key" -C phasetop-test-client
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 600 "$dir/authorized_keys"
user=$(id -un)
# sshd run by root wants its privilege-separation directory.
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd && chmod 755 /run/sshd

for attempt in 1 2 3 4 5 6 7 8; do
  port=$(( 20000 + (RANDOM * 7 + $$ + attempt * 997) % 40000 ))
  cat > "$dir/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PrintMotd no
LogLevel ERROR
CFG
  rm -f "$dir/sshd.pid"
  if "$sshd" -t -f "$dir/sshd_config" 2>"$dir/sshd.log" && "$sshd" -f "$dir/sshd_config" -E "$dir/sshd.log"; then
    for _ in $(seq 50); do
      [ -s "$dir/sshd.pid" ] && break
      sleep 0.05
    done
    if [ -s "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then
      cat > "$dir/ssh_config" <<CFG
Host phasetop-test
  HostName 127.0.0.1
  Port $port
  User $user
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile $dir/known_hosts
  BatchMode yes
  LogLevel ERROR
  ConnectTimeout 5
CFG
      # One real login, so that a broken set-up says so here and not in a test.
      if out=$(ssh -F "$dir/ssh_config" phasetop-test echo phasetop-sshd-ok 2>&1) && [ "$out" = phasetop-sshd-ok ]; then
        pid=$(cat "$dir/sshd.pid")
        # Stop the daemon when its owner is gone (a test process has no exit hook).
        (while kill -0 "$owner" 2>/dev/null; do sleep 1; done; kill "$pid" 2>/dev/null) </dev/null >/dev/null 2>&1 &
        disown
        echo "PHASETOP_SSH=ssh -F $dir/ssh_config"
        echo "SSHD_PID=$(cat "$dir/sshd.pid")"
        echo "SSHD_PORT=$port"
        exit 0
      fi
      kill "$(cat "$dir/sshd.pid")" 2>/dev/null || true
      skip "sshd started but a key login failed: $out ($(tail -3 "$dir/sshd.log" | tr '\n' ' '))"
    fi
  fi
done
skip "sshd would not start: $(tail -3 "$dir/sshd.log" 2>/dev/null | tr '\n' ' ')"

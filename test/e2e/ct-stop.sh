#!/bin/bash
# Stop a container started by ct-start.sh: power it off, kill only its own
# processes (by the recorded PIDs), remove its cgroup and unmount everything.
NAME=$1
ST=/tmp/vpnc-ct-$NAME
[ -f "$ST.pids" ] || exit 0
read -r UPID SPID CG < "$ST.pids"
kill -s SIGRTMIN+4 "$SPID" 2>/dev/null || true   # = systemctl poweroff
for _ in $(seq 100); do kill -0 "$UPID" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$UPID" 2>/dev/null; then kill -9 "$SPID" 2>/dev/null; sleep 0.5; fi
find "$CG" -depth -type d -exec rmdir {} \; 2>/dev/null || true
mountpoint -q "$ST/root" 2>/dev/null && umount -l "$ST/root"
mountpoint -q "$ST" 2>/dev/null && umount -l "$ST"
rm -rf "$ST" "$ST.pids" "$ST.init" "$ST.log" "$ST.console"

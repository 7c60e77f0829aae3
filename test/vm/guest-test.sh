#!/bin/bash
# Runs inside the QEMU guest (systemd as PID 1, Debian kernel WITH the
# WireGuard module). Same shape as the container e2e tests, but the tunnel
# must use kernel WireGuard. Prints "PASS name"/"FAIL name" lines and a final
# "RESULT PASS|FAIL (n passed, m failed)".
set -u
pass=0 fail=0
ok() { if eval "$2" >/tmp/check.out 2>&1; then echo "PASS $1"; pass=$((pass+1)); else echo "FAIL $1"; sed 's/^/    /' /tmp/check.out | tail -20; fail=$((fail+1)); fi; }
modprobe wireguard || true

# The provider: kernel WireGuard peer in namespace vpnsrv behind a veth "internet".
ip netns add vpnsrv
ip link add up0 type veth peer name srv0 netns vpnsrv
ip addr add 10.213.0.1/24 dev up0; ip link set up0 up
ip -n vpnsrv addr add 10.213.0.2/24 dev srv0; ip -n vpnsrv link set srv0 up; ip -n vpnsrv link set lo up
SK=$(wg genkey); SP=$(echo "$SK" | wg pubkey); CK=$(wg genkey); CP=$(echo "$CK" | wg pubkey)
ip -n vpnsrv link add wgsrv type wireguard
echo "$SK" > /run/srv.key
ip netns exec vpnsrv wg set wgsrv private-key /run/srv.key listen-port 51820 peer "$CP" allowed-ips 10.123.0.10/32
ip -n vpnsrv addr add 10.123.0.1/24 dev wgsrv; ip -n vpnsrv addr add 10.123.0.99/24 dev wgsrv; ip -n vpnsrv link set wgsrv up
systemd-run --quiet --unit=vpnsrv-peer ip netns exec vpnsrv /usr/local/bin/vpnc-testpeer \
	-dns 10.123.0.1:53,10.123.0.99:53,10.123.0.99:853,10.213.0.2:53 -tcp-echo 10.123.0.1:7,10.213.0.2:7 \
	-udp-echo 10.123.0.1:7 -answer 10.123.0.77 -log /run/dns.log -ready /run/peer.ready
for i in $(seq 100); do [ -e /run/peer.ready ] && break; sleep 0.1; done

mkdir -p /etc/vpn-confinement.d/keys
echo "$CK" > /etc/vpn-confinement.d/keys/vm.key; chmod 600 /etc/vpn-confinement.d/keys/vm.key
cat > /etc/vpn-confinement.d/vm.yaml <<EOT
dns:
  servers: [10.123.0.1]
wireguard:
  interface: wgk
  backend: kernel
  privateKeyFile: /etc/vpn-confinement.d/keys/vm.key
  addresses: [10.123.0.10/32]
  peers:
    - publicKey: $SP
      endpoint: 10.213.0.2:51820
      allowedIPs: [0.0.0.0/0]
services:
  - unit: app.service
EOT
printf '[Service]\nExecStart=/bin/sleep infinity\nDynamicUser=yes\n' > /etc/systemd/system/app.service
systemctl daemon-reload
systemctl start app.service || journalctl --no-pager -n 40 -u app.service -u vpn-ns@vm.service -u vpn-wg@vm.service

props() { # the generated drop-in as systemd-run -p arguments
	grep -E '^[A-Za-z]+=' /run/systemd/generator/app.service.d/50-vpn-confinement.conf | grep -v '^Documentation=' | sed 's/^/-p\n/'
}
mapfile -t P < <(props)
confined() { systemd-run --wait --pipe --quiet --collect --service-type=exec -p DynamicUser=yes "${P[@]}" -- "$@"; }

ok "app active" 'systemctl is-active app.service'
ok "kernel wireguard link in the namespace" 'ip -n vm -d link show wgk | grep -q "wireguard"'
ok "UDP socket not in the namespace" '! ip netns exec vm ss -uan | grep -q 51820'
ok "service netns is /run/netns/vm" '[ "$(stat -L -c %i /proc/$(systemctl show -P MainPID app.service)/ns/net)" = "$(stat -L -c %i /run/netns/vm)" ]'
ok "tunnel echo from the service" 'confined /usr/local/bin/vpnc-probe tcp 10.123.0.1:7'
ok "kernel handshake done" '[ "$(ip netns exec vm wg show wgk latest-handshakes | awk "{print \$2}")" -gt 0 ]'
ok "DNS to the configured resolver" 'confined /usr/local/bin/vpnc-probe dns udp 10.123.0.1:53 ok.example'
systemd-run --quiet --unit=cap tcpdump --immediate-mode -Z root -i up0 -n -U -w /run/leak.pcap 'not (udp and port 51820)'; sleep 1
ok "DNS to another resolver blocked" '! confined /usr/local/bin/vpnc-probe -timeout 1s dns udp 10.123.0.99:53 leak.example'
ok "DoT blocked" '! confined /usr/local/bin/vpnc-probe -timeout 1s dns tcp 10.123.0.99:853 leak.example'
ok "uplink DNS blocked" '! confined /usr/local/bin/vpnc-probe -timeout 1s dns udp 10.213.0.2:53 leak.example'
ok "host uplink unreachable from the service" '! confined /usr/local/bin/vpnc-probe -timeout 1s tcp 10.213.0.1:7'
sleep 0.5; systemctl stop cap
ok "no packet outside the WireGuard flow on the uplink" '[ "$(tcpdump -n -r /run/leak.pcap 2>/dev/null | grep -vc "ARP\|ICMP6")" = 0 ]'
# onTunnelLoss: block (the default): the tunnel stops, the service keeps
# running (same PID) with no way out; it comes back by itself when killed.
pid0=$(systemctl show -P MainPID app.service)
systemctl stop vpn-wg@vm.service
ok "tunnel stop keeps the service running" '[ "$(systemctl show -P MainPID app.service)" = "$pid0" ] && systemctl is-active -q app.service'
ok "tunnel link removed" '! ip -n vm link show wgk'
ok "kill switch still loaded" 'ip netns exec vm nft list table inet vpn_confinement'
ok "no route out without the tunnel" '! ip netns exec vm /usr/local/bin/vpnc-probe -timeout 1s tcp 10.213.0.2:7'
systemctl start vpn-wg@vm.service
ok "chain comes back" 'systemctl is-active app.service && confined /usr/local/bin/vpnc-probe tcp 10.123.0.1:7'
systemctl kill -s KILL vpn-wg@vm.service
for i in $(seq 100); do systemctl is-active -q vpn-wg@vm.service && ip -n vm link show wgk >/dev/null 2>&1 && break; sleep 0.1; done
ok "killed tunnel helper comes back by itself, the service keeps running" '[ "$(systemctl show -P MainPID app.service)" = "$pid0" ] && confined /usr/local/bin/vpnc-probe tcp 10.123.0.1:7'
ok "the kernel link came back" 'ip -n vm -d link show wgk | grep -q wireguard'
echo "RESULT $([ $fail = 0 ] && echo PASS || echo FAIL) ($pass passed, $fail failed)"

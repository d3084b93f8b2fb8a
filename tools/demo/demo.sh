#!/bin/bash
# The xdpstack demo: two hosts made of network namespaces joined by a veth
# pair, xdpstack attached on one of them, real kernel traffic between them,
# and what an operator sees: status, stats, /metrics and bpftool; then the
# PSP gateway between the two hosts, each running its own daemon.
# Everything it creates is removed on exit, even on failure.
set -euo pipefail

XDPSTACK=$(realpath "${1:-bin/xdpstack}")
A=xsdemo-a B=xsdemo-b
IF_A=xsdemo0 IF_B=xsdemo1
ADDR_A=10.213.250.1 ADDR_B=10.213.250.2
METRICS=127.0.0.1:9437
WORK=$(mktemp -d)
# The PSP gateway: the wire (outer IPv6, the default), the key exchange
# (gRPC over mutual TLS on the IPv4 addresses), the virtual addresses.
WIRE_A=fd00:213:250::1 WIRE_B=fd00:213:250::2
VIP_A=10.213.77.1 VIP_B=10.213.77.2
DAEMON_PID= KECHO_PID= PSP_A_PID= PSP_B_PID= HTTP_PID= PEER_HTTP_PID=

in_a() { nsenter --net=/run/netns/$A -- "$@"; }
in_b() { nsenter --net=/run/netns/$B -- "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# wait_ready READY LOG waits up to 10 s for a daemon's ready file.
wait_ready() {
	for _ in $(seq 100); do [ -s "$1" ] && return; sleep 0.1; done
	cat "$2"
	echo "xdpstack did not become ready" >&2
	exit 1
}

cleanup() {
	set +e
	for pid in $KECHO_PID $HTTP_PID $PEER_HTTP_PID; do kill -TERM "$pid" 2>/dev/null && wait "$pid"; done
	for pid in $DAEMON_PID $PSP_A_PID $PSP_B_PID; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid"
			wait "$pid"
		fi
	done
	"$XDPSTACK" detach "$IF_A" >/dev/null 2>&1
	"$XDPSTACK" detach "$IF_B" >/dev/null 2>&1
	ip netns del $A 2>/dev/null
	ip netns del $B 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || { echo "the demo needs root (network namespaces and BPF): sudo make demo" >&2; exit 1; }
ip netns del $A 2>/dev/null || true
ip netns del $B 2>/dev/null || true

step "two hosts: $A ($ADDR_A) and $B ($ADDR_B), joined by veth"
ip netns add $A
ip netns add $B
ip link add $IF_A netns $A type veth peer name $IF_B netns $B
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A addr add $ADDR_A/24 dev $IF_A
ip -n $B addr add $ADDR_B/24 dev $IF_B
ip -n $A link set $IF_A up
ip -n $B link set $IF_B up
ip -n $A -br addr show dev $IF_A

step "xdpstack attach $IF_A (in $A), with the echo and HTTP apps on the userstack"
# nsenter execs xdpstack in place, so $! is the daemon's own pid.
nsenter --net=/run/netns/$A -- "$XDPSTACK" attach "$IF_A" --metrics-addr $METRICS --ready-file "$WORK/ready" \
	--app echo=tcp://:7 --app http=tcp://:80 >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_ready "$WORK/ready" "$WORK/daemon.log"
cat "$WORK/daemon.log"
in_a "$XDPSTACK" status

step "kernel traffic from $B through the attached interface: ping, TCP (iperf3), UDP (iperf3 -u)"
in_b ping -q -c 20 -i 0.01 $ADDR_A | tail -2
in_a iperf3 -s -D -B $ADDR_A --pidfile "$WORK/iperf3.pid"
for _ in $(seq 50); do [ -s "$WORK/iperf3.pid" ] && break; sleep 0.1; done
sleep 0.3
in_b iperf3 -c $ADDR_A -t 2 | grep -E "sender|receiver"
in_b iperf3 -c $ADDR_A -u -b 50M -t 1 | grep -E "receiver"
"$XDPSTACK" stats --rate --interval 500ms --count 2 &
in_b iperf3 -c $ADDR_A -t 1 >/dev/null
wait $!
kill "$(cat "$WORK/iperf3.pid")"

step "the userstack: port 7 and 80 are steered to AF_XDP, served by the echo and HTTP apps"
in_b "$XDPSTACK" echo client --uri tcp://$ADDR_A:7 --bytes 64M --nclients 4 --verify --stats 0
in_b curl -s "http://$ADDR_A/status.json" | head -n 12
in_b ping -q -c 3 -i 0.01 $ADDR_A | tail -1

step "1-byte round trips: the echo app on the userstack (port 7) and on kernel sockets (port 7007)"
# nsenter itself, not in_a: a function run in the background is a
# subshell, whose pid is not the server's.
nsenter --net=/run/netns/$A -- "$XDPSTACK" echo server --uri tcp://$ADDR_A:7007 >"$WORK/kecho.log" 2>&1 &
KECHO_PID=$!
# A plain blocking client: write one byte, read it back, 2000 times.
pingpong() {
	in_b python3 - "$ADDR_A" "$1" <<'PY'
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
rtts = []
for _ in range(2000):
    t = time.perf_counter_ns()
    s.sendall(b"x")
    s.recv(1)
    rtts.append((time.perf_counter_ns() - t) / 1000)
rtts.sort()
print(f"port {sys.argv[2]}: p50 {rtts[1000]:.0f} us, p99 {rtts[1980]:.0f} us")
PY
}
for _ in $(seq 50); do in_b bash -c "echo >/dev/tcp/$ADDR_A/7007" 2>/dev/null && break; sleep 0.1; done
pingpong 7
pingpong 7007

step "xdpstack sessions $IF_A: the userstack's listeners and connections, asked over the daemon's control socket"
in_b python3 -c "import socket, time; s = socket.create_connection(('$ADDR_A', 7)); s.sendall(b'hello'); time.sleep(2)" &
HOLDER=$!
sleep 0.5
"$XDPSTACK" sessions "$IF_A" --verbose
wait $HOLDER

step "session rules in XDP: deny TCP to port 7 from $B, see it counted, delete it"
"$XDPSTACK" rules add "$IF_A" --proto tcp --remote $ADDR_B --local :7 --action deny --tag demo-deny
in_b timeout 2 "$XDPSTACK" echo client --uri tcp://$ADDR_A:7 --bytes 1K --stats 0 >/dev/null 2>&1 &&
	echo "connected: the rule did not hold" || echo "connect to port 7: no answer while the rule holds"
"$XDPSTACK" rules list "$IF_A"
"$XDPSTACK" rules del "$IF_A" --tag demo-deny
in_b "$XDPSTACK" echo client --uri tcp://$ADDR_A:7 --bytes 1K --stats 0 | tail -1

step "application namespaces: blue claims a second address of $A, with a secret and a local rule"
ip -n $A addr add 10.213.250.3/24 dev $IF_A
install -m 600 /dev/null "$WORK/blue.secret"
echo "demo-secret-$RANDOM" >"$WORK/blue.secret"
"$XDPSTACK" ns add "$IF_A" blue --secret-file "$WORK/blue.secret" --addr 10.213.250.3
"$XDPSTACK" rules add "$IF_A" --namespace blue --proto tcp --remote 192.0.2.0/24 --action deny --tag no-doc-nets
"$XDPSTACK" ns list "$IF_A"
"$XDPSTACK" rules list "$IF_A" --namespace blue
"$XDPSTACK" ns add "$IF_A" red --secret-file "$WORK/blue.secret" --addr 10.213.250.3 2>&1 || true
"$XDPSTACK" ns del "$IF_A" blue

step "xdpstack capture $IF_A: packets with their verdicts, at the XDP hook (--all while it runs) and at the userstack"
"$XDPSTACK" rules add "$IF_A" --proto tcp --local :22 --action deny --tag demo-no-ssh >/dev/null
# Each capture is reading by the time its first packet comes.
"$XDPSTACK" capture "$IF_A" --all --count 5 --duration 10s --filter "src host $ADDR_B" &
CAPTURE=$!
sleep 0.5
in_b timeout 1 bash -c "echo >/dev/tcp/$ADDR_A/22" 2>/dev/null || true
in_b ping -q -c 2 -i 0.1 $ADDR_A >/dev/null
in_b "$XDPSTACK" echo client --uri tcp://$ADDR_A:7 --bytes 1K --stats 0 >/dev/null
wait $CAPTURE
"$XDPSTACK" rules del "$IF_A" --tag demo-no-ssh >/dev/null
"$XDPSTACK" capture "$IF_A" --point userstack --count 4 --duration 10s &
CAPTURE=$!
sleep 0.5
in_b "$XDPSTACK" echo client --uri tcp://$ADDR_A:7 --bytes 1K --stats 0 >/dev/null
wait $CAPTURE

step "unmodified programs on the userstack: xdpstack run -- iperf3, python3's http.server, curl"
# run execs the program with libxdpstack.so preloaded; --debug says which
# side took each socket. The programs are the distribution's, unchanged.
in_a "$XDPSTACK" run --debug -- iperf3 -s -1 -B $ADDR_A -p 5202 >"$WORK/iperf3-run.log" 2>&1 &
PRELOAD_PID=$!
for _ in $(seq 50); do grep -q "listen $ADDR_A:5202/tcp: userstack" "$WORK/iperf3-run.log" && break; sleep 0.1; done
in_b iperf3 -c $ADDR_A -p 5202 -t 2 | grep -E "sender|receiver"
wait $PRELOAD_PID
grep "^xdpstack\[" "$WORK/iperf3-run.log" | head -3
mkdir -p "$WORK/www" && head -c 4M /dev/urandom >"$WORK/www/blob"
nsenter --net=/run/netns/$A -- "$XDPSTACK" run -- python3 -m http.server 8080 --bind $ADDR_A --directory "$WORK/www" >"$WORK/http-run.log" 2>&1 &
HTTP_PID=$!
for _ in $(seq 50); do in_b bash -c "echo >/dev/tcp/$ADDR_A/8080" 2>/dev/null && break; sleep 0.1; done
in_b curl -s -o /dev/null -w "curl from $B: HTTP %{http_code}, %{size_download} bytes from python3 on the userstack\n" http://$ADDR_A:8080/blob
in_b python3 -c "import socket, time; s = socket.create_connection(('$ADDR_A', 8080)); time.sleep(2)" &
HOLDER=$!
sleep 0.5
"$XDPSTACK" sessions "$IF_A" --verbose | grep -E "App|python3|^queue" || true
wait $HOLDER
nsenter --net=/run/netns/$B -- python3 -m http.server 8081 --bind $ADDR_B --directory "$WORK/www" >/dev/null 2>&1 &
PEER_HTTP_PID=$!
for _ in $(seq 50); do in_a bash -c "echo >/dev/tcp/$ADDR_B/8081" 2>/dev/null && break; sleep 0.1; done
in_a "$XDPSTACK" run --debug -- curl -s -o /dev/null -w "curl on the userstack: HTTP %{http_code}, %{size_download} bytes from %{remote_ip} (local port %{local_port}, the userstack's range)\n" http://$ADDR_B:8081/blob 2>&1 | grep -v "asking the daemon"
kill -TERM $HTTP_PID $PEER_HTTP_PID; wait $HTTP_PID $PEER_HTTP_PID 2>/dev/null || true
HTTP_PID= PEER_HTTP_PID=

step "only what is addressed to $A is steered: forwarded and spoofed packets are not"
# Traffic routed through A to port 80 matches the wildcard listener of the
# HTTP app, but is not for A: it passes to the kernel (pass/not_local).
ip netns exec $A sysctl -q -w net.ipv4.ip_forward=1
ip -n $B route add 10.213.251.0/24 via $ADDR_A
in_b curl -s --connect-timeout 1 http://10.213.251.9/ >/dev/null || true
# SYNs spoofed from A's own address are dropped before the userstack
# sees them (drop/martian), as the kernel drops such martians.
in_b hping3 -q -S -a $ADDR_A -p 7 -c 5 -i u10000 $ADDR_A 2>&1 | grep -E "packets" || true
"$XDPSTACK" stats "$IF_A" | grep -E "ACTION|not_local|martian"

step "xdpstack stats $IF_A (read from the pinned maps)"
"$XDPSTACK" stats "$IF_A"

step "/metrics (excerpt)"
in_a curl -s "http://$METRICS/metrics" | grep -E '^xdpstack_'

# The stats key is action * 64 + reason: pass (2) x 64 + no_match (4) = 132.
step "bpftool map lookup pinned /sys/fs/bpf/xdpstack/$IF_A/stats key 132 0 0 0 (pass, no_match)"
bpftool map lookup pinned "/sys/fs/bpf/xdpstack/$IF_A/stats" key 132 0 0 0
step "bpftool map dump pinned /sys/fs/bpf/xdpstack/$IF_A/info"
bpftool map dump pinned "/sys/fs/bpf/xdpstack/$IF_A/info"

step "SIGTERM: xdpstack detaches and removes its pins"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID"
DAEMON_PID=
tail -1 "$WORK/daemon.log"
ls /sys/fs/bpf/xdpstack 2>/dev/null || echo "no pins left under /sys/fs/bpf/xdpstack"
in_b ping -q -c 3 -i 0.01 $ADDR_A | tail -1

step "PSP gateway: $A and $B each attach with DOCA's JSON config and certificates from xdpstack psp certs"
# The outer header is IPv6 by default (--outer-ip-type): the wire needs
# IPv6 addresses. Each certificate names its gRPC address and its
# virtual address; a peer gets tunnels only for the addresses it names.
ip -n $A addr add $WIRE_A/64 dev $IF_A nodad
ip -n $B addr add $WIRE_B/64 dev $IF_B nodad
"$XDPSTACK" psp certs --dir "$WORK/psp" a=$ADDR_A,$VIP_A b=$ADDR_B,$VIP_B
# psp_config SELF PEER SELF_VIP PEER_VIP: DOCA's format as it is.
psp_config() {
	printf '{"config": {"local-grpc-address": "%s:3000"},\n "peers": [{"remote-grpc-address": "%s:3000",\n   "sessions": [{"local-vip": "%s", "remote-vips": ["%s"]}]}]}\n' "$@"
}
psp_config $ADDR_A $ADDR_B $VIP_A $VIP_B >"$WORK/psp/a.json"
psp_config $ADDR_B $ADDR_A $VIP_B $VIP_A >"$WORK/psp/b.json"
cat "$WORK/psp/a.json"
nsenter --net=/run/netns/$A -- "$XDPSTACK" attach "$IF_A" --metrics-addr $METRICS --ready-file "$WORK/psp-a.ready" \
	--psp-config "$WORK/psp/a.json" --psp-cert "$WORK/psp/a.pem" --psp-key "$WORK/psp/a.key" --psp-ca "$WORK/psp/ca.pem" \
	>"$WORK/psp-a.log" 2>&1 &
PSP_A_PID=$!
nsenter --net=/run/netns/$B -- "$XDPSTACK" attach "$IF_B" --metrics-addr "" --ready-file "$WORK/psp-b.ready" \
	--psp-config "$WORK/psp/b.json" --psp-cert "$WORK/psp/b.pem" --psp-key "$WORK/psp/b.key" --psp-ca "$WORK/psp/ca.pem" \
	>"$WORK/psp-b.log" 2>&1 &
PSP_B_PID=$!
wait_ready "$WORK/psp-a.ready" "$WORK/psp-a.log"
wait_ready "$WORK/psp-b.ready" "$WORK/psp-b.log"
grep "psp gateway serving" "$WORK/psp-a.log"
in_a ip -br addr show dev psp0
in_a ip route show dev psp0

step "kernel traffic between the virtual addresses through psp0: ping (the tunnel is made on the first packet), curl"
in_a ping -q -c 5 -i 0.1 -W 3 $VIP_B | tail -2
head -c 8M /dev/urandom >"$WORK/psp/blob"
nsenter --net=/run/netns/$B -- python3 -m http.server --bind $VIP_B --directory "$WORK/psp" 8000 >/dev/null 2>&1 &
HTTP_PID=$!
for _ in $(seq 50); do in_a bash -c "echo >/dev/tcp/$VIP_B/8000" 2>/dev/null && break; sleep 0.1; done
in_a curl -s -o "$WORK/blob.got" -w "curl http://$VIP_B:8000/blob: %{http_code}, %{size_download} bytes at %{speed_download} B/s\n" http://$VIP_B:8000/blob
cmp -s "$WORK/psp/blob" "$WORK/blob.got" && echo "every byte as sent"
kill "$HTTP_PID"
wait "$HTTP_PID" 2>/dev/null || true
HTTP_PID=

step "xdpstack psp tunnels and psp peers: what each gateway holds"
"$XDPSTACK" psp tunnels "$IF_A"
"$XDPSTACK" psp tunnels "$IF_B"
"$XDPSTACK" psp peers "$IF_A"

step "PSP under an SPI $A never issued: dropped in XDP before any decryption (drop/psp_spi)"
# A base header (next header IPv4, version 1, SPI 0xdeadbeef), 32 bytes
# that decrypt to nothing, a 16-byte ICV: sent from a kernel UDP socket.
in_b python3 - "$WIRE_A" <<'PY'
import socket, struct, sys
header = struct.pack("!BBBBI8s", 4, 1, 0, 1 << 2 | 1, 0xdeadbeef, bytes(8))
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(10):
    s.sendto(header + bytes(32) + bytes(16), (sys.argv[1], 1000))
print("sent 10 datagrams to port 1000 under SPI 0xdeadbeef")
PY
sleep 0.2
"$XDPSTACK" stats "$IF_A" | grep -E "ACTION|psp_|steered"

step "xdpstack psp rotate $IF_A: new master keys, the tunnels re-keyed, traffic goes on"
"$XDPSTACK" psp rotate "$IF_A"
in_a ping -q -c 5 -i 0.1 -W 3 $VIP_B | tail -2
# $B now sends under an SPI of $A's new keys; $A takes the old ones
# until they are retired.
"$XDPSTACK" psp tunnels "$IF_B"

step "/metrics of $A's gateway (xdpstack_psp_*, excerpt)"
in_a curl -s "http://$METRICS/metrics" | grep -E '^xdpstack_psp_' | grep -vE '_bucket|errors_total.* 0$'

step "SIGTERM both gateways: psp0, its routes and the pins go with them"
for pid in $PSP_A_PID $PSP_B_PID; do kill -TERM "$pid"; wait "$pid"; done
PSP_A_PID= PSP_B_PID=
in_a ip link show psp0 2>/dev/null || echo "no psp0 left in $A"
ls /sys/fs/bpf/xdpstack 2>/dev/null || echo "no pins left under /sys/fs/bpf/xdpstack"

package preload

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/maps"
)

// TestProtocolLayout holds protocol.go to lib/protocol.h: the
// constants by reading the header, the sizes and offsets by compiling
// a program that prints them (where a C compiler is installed).
func TestProtocolLayout(t *testing.T) {
	header, err := os.ReadFile("lib/protocol.h")
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]int64{
		"XS_PROTO_VERSION": Version, "XS_DECLINED": StatusDeclined, "XS_NAME_MAGIC_LEN": int64(len(nameMagic)),
		"XS_HELLO": int64(OpHello), "XS_BIND": int64(OpBind), "XS_LISTEN": int64(OpListen), "XS_CONNECT": int64(OpConnect),
		"XS_UDP_CONNECT": int64(OpUDPConnect), "XS_SOCKERR": int64(OpSockErr),
		"XS_NONBLOCK": int64(FlagNonblock), "XS_V6ONLY": int64(FlagV6Only), "XS_REUSEADDR": int64(FlagReuseAddr),
		"XS_REUSEPORT": int64(FlagReusePort), "XS_INET6": int64(FlagInet6), "XS_NODELAY": int64(FlagNoDelay),
		"XS_KIND_LISTENER": int64(KindListener), "XS_KIND_TCP": int64(KindTCP), "XS_KIND_UDP": int64(KindUDP),
	}
	// "#define NAME VALUE" and "NAME = VALUE," with VALUE a number, a
	// shift or a character.
	re := regexp.MustCompile(`(?m)^\s*(?:#define\s+(XS_\w+)\s+\(?(-?\w+)\)?|(XS_\w+)\s*=\s*([^,/]+?)\s*,)`)
	found := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(string(header), -1) {
		name, text := m[1]+m[3], strings.TrimSpace(m[2]+m[4])
		want, ok := consts[name]
		if !ok {
			continue
		}
		found[name] = true
		if got := cValue(t, text); got != want {
			t.Errorf("%s: protocol.h says %s (%d), protocol.go %d", name, text, got, want)
		}
	}
	for name := range consts {
		if !found[name] {
			t.Errorf("%s: not found in protocol.h", name)
		}
	}
	if !strings.Contains(string(header), `#define XS_NAME_MAGIC "\0xdpstack/"`) {
		t.Errorf("XS_NAME_MAGIC is not %q", nameMagic)
	}

	// What the Go side encodes at, as the C compiler lays it out.
	layout := map[string]int{
		"sizeof(struct xs_addr)": addrSize, "sizeof(struct xs_request)": RequestSize,
		"sizeof(struct xs_reply)": ReplySize, "sizeof(struct xs_name)": NameSize,
		"sizeof(struct xs_accept)": NameSize, "sizeof(struct xs_dgram)": DgramSize,
		"offsetof(struct xs_addr, port)": 2, "offsetof(struct xs_addr, addr)": 4,
		"offsetof(struct xs_request, op)": 4, "offsetof(struct xs_request, proto)": 8,
		"offsetof(struct xs_request, flags)": 12, "offsetof(struct xs_request, backlog)": 16,
		"offsetof(struct xs_request, id)": 20, "offsetof(struct xs_request, local)": reqLocal,
		"offsetof(struct xs_request, remote)": reqRemote, "offsetof(struct xs_request, text)": reqText,
		"sizeof(((struct xs_request *)0)->text)": textSize,
		"offsetof(struct xs_reply, id)":          4, "offsetof(struct xs_reply, local)": replyLocal,
		"offsetof(struct xs_reply, message)": replyMessage, "sizeof(((struct xs_reply *)0)->message)": messageSize,
		"offsetof(struct xs_name, kind)": nameKind, "offsetof(struct xs_name, family)": nameFamily,
		"offsetof(struct xs_name, id)": nameID, "offsetof(struct xs_name, instance)": nameInstance,
		"offsetof(struct xs_name, local)": nameLocal, "offsetof(struct xs_name, remote)": nameRemote,
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skipf("no C compiler to check the layout with: %v", err)
	}
	dir := t.TempDir()
	var src strings.Builder
	src.WriteString("#include <stdio.h>\n#include <stddef.h>\n#include \"" + mustAbs(t, "lib/protocol.h") + "\"\nint main(void) {\n")
	var exprs []string
	for e := range layout {
		exprs = append(exprs, e)
		src.WriteString("\tprintf(\"%s=%zu\\n\", \"" + e + "\", " + e + ");\n")
	}
	src.WriteString("\treturn 0;\n}\n")
	if err := os.WriteFile(filepath.Join(dir, "layout.c"), []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "layout")
	if out, err := exec.Command(cc, "-Wall", "-Werror", "-o", bin, filepath.Join(dir, "layout.c")).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		e, v, _ := strings.Cut(line, "=")
		got, _ := strconv.Atoi(v)
		if got != layout[e] {
			t.Errorf("%s: %d in C, %d in protocol.go", e, got, layout[e])
		}
	}
	if n := len(strings.Split(strings.TrimSpace(string(out)), "\n")); n != len(exprs) {
		t.Errorf("the layout program printed %d lines, want %d", n, len(exprs))
	}
}

// cValue reads a C constant: a number, 1 << N or 'C'.
func cValue(t *testing.T, text string) int64 {
	t.Helper()
	if l, r, ok := strings.Cut(text, "<<"); ok {
		return cValue(t, strings.TrimSpace(l)) << cValue(t, strings.TrimSpace(r))
	}
	if len(text) == 3 && text[0] == '\'' && text[2] == '\'' {
		return int64(text[1])
	}
	v, err := strconv.ParseInt(text, 0, 64)
	if err != nil {
		t.Fatalf("constant %q: %v", text, err)
	}
	return v
}

func mustAbs(t *testing.T, path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestProtocolRoundTrip(t *testing.T) {
	req := Request{Op: OpConnect, Proto: maps.TCP, Flags: FlagNonblock | FlagInet6, Backlog: 7, ID: 9,
		Local: netip.MustParseAddrPort("[::ffff:10.0.0.1]:0"), Remote: netip.MustParseAddrPort("10.0.0.2:80"), Text: "x"}
	b := req.Marshal()
	got, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	// Text is the whole field; its NULs separate HELLO's words.
	if got.Text = strings.TrimRight(got.Text, "\x00"); got != req {
		t.Errorf("ParseRequest(Marshal(%+v)) = %+v", req, got)
	}
	// The port is in network order, as in a sockaddr.
	if b[reqRemote] != 4 || b[reqRemote+2] != 0 || b[reqRemote+3] != 80 {
		t.Errorf("remote encoded as % x", b[reqRemote:reqRemote+addrSize])
	}
	name := Name{Kind: KindTCP, Family: 6, ID: 3, Instance: 0xdeadbeef, Local: netip.MustParseAddrPort("[2001:db8::1]:443"), Remote: netip.MustParseAddrPort("10.0.0.1:5")}
	if got, err := ParseName(name.Marshal()); err != nil || got != name {
		t.Errorf("ParseName(Marshal(%+v)) = %+v, %v", name, got, err)
	}
	reply := Reply{Status: StatusDeclined, ID: 4, Local: netip.MustParseAddrPort("10.0.0.1:80"), Message: strings.Repeat("m", 300)}
	gotReply, err := ParseReply(reply.Marshal())
	if reply.Message = reply.Message[:messageSize-1]; err != nil || gotReply != reply {
		t.Errorf("ParseReply(Marshal(%+v)) = %+v, %v", reply, gotReply, err)
	}
	if h := parseHello("ns\x00sec\x00both\x00nginx\x00"); h != (hello{"ns", "sec", "both", "nginx"}) {
		t.Errorf("parseHello: %+v", h)
	}
}

func TestParseRequestRefuses(t *testing.T) {
	good := Request{Op: OpBind, Proto: maps.TCP}.Marshal()
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:100], "request of 100 bytes (want 576)"},
		{"version", func() []byte { b := append([]byte(nil), good...); b[0] = 2; return b }(), "protocol version 2"},
		{"family", func() []byte { b := append([]byte(nil), good...); b[reqLocal] = 5; return b }(), "local address family 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseRequest(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseRequest: got %v, want %q", err, tc.want)
			}
		})
	}
}

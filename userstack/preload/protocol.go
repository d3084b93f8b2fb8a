package preload

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/xdpstack/xdpstack/maps"
)

// The protocol of lib/protocol.h, which this file mirrors: the two
// change together, and TestProtocolLayout holds them to each other.

// Version is XS_PROTO_VERSION.
const Version = 1

// Op is a request's operation (enum xs_op).
type Op uint32

const (
	OpHello      Op = 1
	OpBind       Op = 2
	OpListen     Op = 3
	OpConnect    Op = 4
	OpUDPConnect Op = 5
	OpSockErr    Op = 6
)

var opNames = map[Op]string{OpHello: "hello", OpBind: "bind", OpListen: "listen", OpConnect: "connect", OpUDPConnect: "udp connect", OpSockErr: "sockerr"}

func (o Op) String() string {
	if name, ok := opNames[o]; ok {
		return name
	}
	return fmt.Sprintf("op %d", uint32(o))
}

// Flags are the program's socket options the daemon honours (enum
// xs_flags).
type Flags uint32

const (
	FlagNonblock Flags = 1 << iota
	FlagV6Only
	FlagReuseAddr
	FlagReusePort
	// FlagInet6: the program's socket is AF_INET6.
	FlagInet6
	FlagNoDelay
)

// StatusDeclined (XS_DECLINED) leaves the call to libc.
const StatusDeclined = -1

// Kind is what a handed-over socket carries (enum xs_kind).
type Kind uint8

const (
	KindListener Kind = 'L'
	KindTCP      Kind = 'T'
	KindUDP      Kind = 'U'
)

// Sizes of the structs, as the C compiler lays them out: every field
// at its natural alignment, none padded but xs_addr's explicit pad.
const (
	addrSize    = 20  // struct xs_addr
	RequestSize = 576 // struct xs_request: 6 uint32, 2 xs_addr, text[512]
	ReplySize   = 284 // struct xs_reply: int32, uint32, xs_addr, message[256]
	NameSize    = 60  // struct xs_name: magic[10], kind, family, 2 uint32, 2 xs_addr
	DgramSize   = addrSize
	textSize    = 512
	messageSize = 256
)

// nameMagic starts every abstract name the daemon binds (XS_NAME_MAGIC):
// the NUL makes it abstract.
const nameMagic = "\x00xdpstack/"

// Request is struct xs_request.
type Request struct {
	Op      Op
	Proto   maps.Protocol
	Flags   Flags
	Backlog uint32
	ID      uint32
	// Local and Remote are invalid for family 0.
	Local, Remote netip.AddrPort
	Text          string
}

// Reply is struct xs_reply.
type Reply struct {
	// Status is 0, StatusDeclined, EINPROGRESS or a positive errno.
	Status  int32
	ID      uint32
	Local   netip.AddrPort
	Message string
}

// Name is struct xs_name, the abstract address of a handed-over socket.
type Name struct {
	Kind Kind
	// Family is 4 or 6: the program's socket's.
	Family   uint8
	ID       uint32
	Instance uint32
	Local    netip.AddrPort
	Remote   netip.AddrPort
}

var le = binary.LittleEndian

// putAddr writes struct xs_addr: family 0, 4 or 6, the port in network
// order, the address.
func putAddr(b []byte, ap netip.AddrPort) {
	clear(b[:addrSize])
	if !ap.Addr().IsValid() {
		return
	}
	a := ap.Addr()
	if a.Is4() {
		b[0] = 4
		v4 := a.As4()
		copy(b[4:], v4[:])
	} else {
		b[0] = 6
		v6 := a.As16()
		copy(b[4:], v6[:])
	}
	binary.BigEndian.PutUint16(b[2:], ap.Port())
}

func readAddr(b []byte) (netip.AddrPort, error) {
	port := binary.BigEndian.Uint16(b[2:])
	switch b[0] {
	case 0:
		return netip.AddrPort{}, nil
	case 4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
	case 6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[4:20])), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("address family %d (want 0, 4 or 6)", b[0])
}

// cString reads a NUL-terminated string of a fixed-size field.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// putCString writes s into a fixed-size field, cut to leave room for
// the NUL.
func putCString(b []byte, s string) {
	clear(b)
	copy(b[:len(b)-1], s)
}

// Request layout: version 0, op 4, proto 8, flags 12, backlog 16, id 20,
// local 24, remote 44, text 64.
const (
	reqLocal  = 24
	reqRemote = 44
	reqText   = 64
)

// ParseRequest reads one request message.
func ParseRequest(b []byte) (Request, error) {
	if len(b) != RequestSize {
		return Request{}, fmt.Errorf("request of %d bytes (want %d)", len(b), RequestSize)
	}
	if v := le.Uint32(b); v != Version {
		return Request{}, fmt.Errorf("protocol version %d (this daemon speaks %d; use the library of its build)", v, Version)
	}
	proto := le.Uint32(b[8:])
	if proto > 255 {
		return Request{}, fmt.Errorf("protocol %d (want 6 or 17)", proto)
	}
	r := Request{
		Op:      Op(le.Uint32(b[4:])),
		Proto:   maps.Protocol(proto),
		Flags:   Flags(le.Uint32(b[12:])),
		Backlog: le.Uint32(b[16:]),
		ID:      le.Uint32(b[20:]),
		Text:    string(b[reqText:]),
	}
	var err error
	if r.Local, err = readAddr(b[reqLocal:]); err != nil {
		return r, fmt.Errorf("local %w", err)
	}
	if r.Remote, err = readAddr(b[reqRemote:]); err != nil {
		return r, fmt.Errorf("remote %w", err)
	}
	return r, nil
}

// Marshal encodes r, as the library would.
func (r Request) Marshal() []byte {
	b := make([]byte, RequestSize)
	le.PutUint32(b, Version)
	le.PutUint32(b[4:], uint32(r.Op))
	le.PutUint32(b[8:], uint32(r.Proto))
	le.PutUint32(b[12:], uint32(r.Flags))
	le.PutUint32(b[16:], r.Backlog)
	le.PutUint32(b[20:], r.ID)
	putAddr(b[reqLocal:], r.Local)
	putAddr(b[reqRemote:], r.Remote)
	copy(b[reqText:RequestSize-1], r.Text)
	return b
}

// Reply layout: status 0, id 4, local 8, message 28.
const (
	replyLocal   = 8
	replyMessage = 28
)

// Marshal encodes r.
func (r Reply) Marshal() []byte {
	b := make([]byte, ReplySize)
	le.PutUint32(b, uint32(r.Status))
	le.PutUint32(b[4:], r.ID)
	putAddr(b[replyLocal:], r.Local)
	putCString(b[replyMessage:], r.Message)
	return b
}

// ParseReply reads one reply message, as the library would.
func ParseReply(b []byte) (Reply, error) {
	if len(b) != ReplySize {
		return Reply{}, fmt.Errorf("reply of %d bytes (want %d)", len(b), ReplySize)
	}
	r := Reply{Status: int32(le.Uint32(b)), ID: le.Uint32(b[4:]), Message: cString(b[replyMessage:])}
	var err error
	r.Local, err = readAddr(b[replyLocal:])
	return r, err
}

// Name layout: magic 0, kind 10, family 11, id 12, instance 16, local
// 20, remote 40.
const (
	nameKind     = 10
	nameFamily   = 11
	nameID       = 12
	nameInstance = 16
	nameLocal    = 20
	nameRemote   = 40
)

// Marshal encodes n as the abstract socket address it is bound to.
func (n Name) Marshal() []byte {
	b := make([]byte, NameSize)
	copy(b, nameMagic)
	b[nameKind] = byte(n.Kind)
	b[nameFamily] = n.Family
	le.PutUint32(b[nameID:], n.ID)
	le.PutUint32(b[nameInstance:], n.Instance)
	putAddr(b[nameLocal:], n.Local)
	putAddr(b[nameRemote:], n.Remote)
	return b
}

// ParseName reads the name of a handed-over socket.
func ParseName(b []byte) (Name, error) {
	if len(b) != NameSize || string(b[:len(nameMagic)]) != nameMagic {
		return Name{}, fmt.Errorf("not an xdpstack socket name: %q", b)
	}
	n := Name{Kind: Kind(b[nameKind]), Family: b[nameFamily], ID: le.Uint32(b[nameID:]), Instance: le.Uint32(b[nameInstance:])}
	var err error
	if n.Local, err = readAddr(b[nameLocal:]); err != nil {
		return n, err
	}
	n.Remote, err = readAddr(b[nameRemote:])
	return n, err
}

// putDgram writes the struct xs_dgram that starts a datagram.
func putDgram(b []byte, peer netip.AddrPort) { putAddr(b, peer) }

// readDgram reads the peer of a datagram.
func readDgram(b []byte) (netip.AddrPort, []byte, error) {
	if len(b) < DgramSize {
		return netip.AddrPort{}, nil, fmt.Errorf("datagram of %d bytes, shorter than its header (%d)", len(b), DgramSize)
	}
	peer, err := readAddr(b)
	return peer, b[DgramSize:], err
}

// hello is what XS_HELLO's text says: "namespace\0secret\0scope\0procname\0".
type hello struct{ namespace, secret, scope, procname string }

func parseHello(text string) hello {
	f := append(strings.SplitN(text, "\x00", 5), "", "", "", "")
	return hello{f[0], f[1], f[2], f[3]}
}

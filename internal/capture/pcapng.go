package capture

import (
	"bufio"
	"encoding/binary"
	"io"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpstack/xdpstack/maps"
)

// Writer writes packets to pcapng, one interface for the capture's
// interface and point, each packet with its direction and a comment
// that says why it is there (Comment), as Wireshark and
// `tshark -T fields -e frame.comment` show it. The PSP gateway's inner
// packets have no Ethernet header, and no MAC addresses that a made-up
// one would carry: that interface's link type is LINKTYPE_RAW (101, IP
// with its version in the first nibble), which tcpdump, tshark and
// Wireshark read, filters such as "ip6 and tcp port 80" included.
//
// gopacket's writer writes the section and interface blocks; the packet
// blocks are written here, because its option encoding boxes each
// option in an interface: five allocations and some 460 ns a packet,
// where this takes a fraction of that, and a capture of every packet
// writes a million a second.
type Writer struct {
	buf *bufio.Writer
	// block is the packet block being written, kept for the next.
	block []byte
	tags  RuleTags
	// comments holds each comment made so far: a capture's packets
	// share a few, and making one costs more than writing a packet.
	comments map[commentKey]string
}

// commentKey is what a packet's comment says.
type commentKey struct {
	point   Point
	out     bool
	queue   int
	verdict maps.Verdict
	rule    uint32
	spi     uint32
	sampled bool
}

// NewWriter starts a pcapng section on w for a capture of iface at
// point, cutting packets to snaplen bytes.
func NewWriter(w io.Writer, iface string, point Point, snaplen int, filter *Filter, tags RuleTags) (*Writer, error) {
	buf := bufio.NewWriterSize(w, 1<<16)
	link := layers.LinkTypeEthernet
	if point == PointPSP {
		link = layers.LinkTypeRaw
	}
	ng, err := pcapgo.NewNgWriterInterface(buf, pcapgo.NgInterface{
		Name:                iface,
		Description:         "xdpstack capture at the " + point.String() + " point",
		Filter:              filter.String(),
		OS:                  "Linux",
		LinkType:            link,
		SnapLength:          uint32(snaplen),
		TimestampResolution: 9, // nanoseconds
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "xdpstack capture"}})
	if err == nil {
		err = ng.Flush() // into buf, where the packets follow
	}
	if err != nil {
		return nil, err
	}
	return &Writer{buf: buf, tags: tags, comments: map[commentKey]string{}}, nil
}

// pcapng's codes (draft-ietf-opsawg-pcapng).
const (
	enhancedPacketBlock = 6
	optEndOfOpt         = 0
	optComment          = 1
	epbFlags            = 2
	epbFlagsInbound     = 1
	epbFlagsOutbound    = 2
)

// Write adds a packet as an enhanced packet block of interface 0, with
// its comment and its direction (epb_flags).
func (w *Writer) Write(p *Packet) error {
	key := commentKey{p.Point, p.Out, p.Queue, p.Verdict, p.RuleID, p.SPI, p.Sampled}
	comment, ok := w.comments[key]
	if !ok {
		comment = Comment(p, w.tags)
		w.comments[key] = comment
	}
	flags := uint32(epbFlagsInbound)
	if p.Out {
		flags = epbFlagsOutbound
	}
	le := binary.LittleEndian
	options := 4 + padded(len(comment)) + 4 + 4 + 4 // comment, flags, end of options
	total := 28 + padded(len(p.Data)) + options + 4
	ts := uint64(p.Time.UnixNano())
	b := w.block[:0]
	b = le.AppendUint32(b, enhancedPacketBlock)
	b = le.AppendUint32(b, uint32(total))
	b = le.AppendUint32(b, 0) // interface
	b = le.AppendUint32(b, uint32(ts>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(p.Data)))
	b = le.AppendUint32(b, uint32(p.Len))
	b = appendPadded(b, p.Data)
	b = le.AppendUint16(b, optComment)
	b = le.AppendUint16(b, uint16(len(comment)))
	b = appendPadded(b, []byte(comment))
	b = le.AppendUint16(b, epbFlags)
	b = le.AppendUint16(b, 4)
	b = le.AppendUint32(b, flags)
	b = le.AppendUint32(b, optEndOfOpt)
	b = le.AppendUint32(b, uint32(total))
	w.block = b
	_, err := w.buf.Write(b)
	return err
}

// padded is n rounded up to a multiple of 4, as pcapng pads its fields.
func padded(n int) int { return (n + 3) &^ 3 }

func appendPadded(b, field []byte) []byte {
	b = append(b, field...)
	return append(b, make([]byte, padded(len(field))-len(field))...)
}

// Flush writes out what is buffered, so that a reader on a pipe sees
// the packets so far.
func (w *Writer) Flush() error { return w.buf.Flush() }

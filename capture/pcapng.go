package capture

import (
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Writer writes packets to pcapng, one interface for the capture's
// interface and point, each packet with its direction and a comment
// that says why it is there (Comment), as Wireshark and
// `tshark -T fields -e frame.comment` show it. gopacket's writer
// writes the comments (the EPB's opt_comment) and the flags.
type Writer struct {
	ng   *pcapgo.NgWriter
	tags RuleTags
}

// NewWriter starts a pcapng section on w for a capture of iface at
// point, cutting packets to snaplen bytes.
func NewWriter(w io.Writer, iface string, point Point, snaplen int, filter *Filter, tags RuleTags) (*Writer, error) {
	ng, err := pcapgo.NewNgWriterInterface(w, pcapgo.NgInterface{
		Name:                iface,
		Description:         "xdpstack capture at the " + point.String() + " point",
		Filter:              filter.String(),
		OS:                  "Linux",
		LinkType:            layers.LinkTypeEthernet,
		SnapLength:          uint32(snaplen),
		TimestampResolution: 9, // nanoseconds
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "xdpstack capture"}})
	if err != nil {
		return nil, err
	}
	return &Writer{ng: ng, tags: tags}, nil
}

// Write adds a packet.
func (w *Writer) Write(p *Packet) error {
	dir := pcapgo.NgEpbFlagDirectionInbound
	if p.Out {
		dir = pcapgo.NgEpbFlagDirectionOutbound
	}
	return w.ng.WritePacketWithOptions(gopacket.CaptureInfo{
		Timestamp:     p.Time,
		CaptureLength: len(p.Data),
		Length:        p.Len,
	}, p.Data, pcapgo.NgPacketOptions{
		Comments: []string{Comment(p, w.tags)},
		Flags:    &pcapgo.NgEpbFlags{Direction: dir},
	})
}

// Flush writes out what is buffered, so that a reader on a pipe sees
// the packets so far.
func (w *Writer) Flush() error { return w.ng.Flush() }

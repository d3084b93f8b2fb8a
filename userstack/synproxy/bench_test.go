package synproxy

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// BenchmarkReceivedSYN is the cost of answering a SYN during a flood.
func BenchmarkReceivedSYN(b *testing.B) {
	p := newProxy(b, &fakeNetstack{owners: map[uint16]Owner{7: Listener}})
	p.setFlood(true)
	syn := fromClient(testFlow(false), header.TCPFields{SeqNum: 1, Flags: header.TCPFlagSyn}, 1460, 0)
	answer := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		p.Received(syn, answer)
	}
}

// BenchmarkReceivedIdle is what the proxy costs a received data
// segment outside a flood, with no flow translated.
func BenchmarkReceivedIdle(b *testing.B) {
	p := newProxy(b, &fakeNetstack{owners: map[uint16]Owner{7: Listener}})
	data := fromClient(testFlow(false), header.TCPFields{SeqNum: 1, AckNum: 1, Flags: header.TCPFlagAck}, 0, 1000)
	answer := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		p.Received(data, answer)
	}
}

package userstack

import (
	"reflect"
	"unsafe"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// The pinned gVisor keeps what the sessions view shows of a TCP
// connection unexported: its sender and receiver variables, the bytes
// in its send buffer, the SACK blocks it sends and the hash that picks
// its transmit queue (tcp.Endpoint.completeStateLocked copies them for
// the TCP probe, which costs every segment a copy). This file reads
// them in place, under the endpoint's own locks, at fields it finds by
// name and type when the program starts: should a gVisor upgrade move
// or retype one, tcpReader.ok is false, the view leaves those columns
// out, and TestTCPInternalsFound fails.

// tcpInternals is the part of a connection the netstack does not export.
type tcpInternals struct {
	sender   tcp.TCPSenderState
	receiver tcp.TCPReceiverState
	// sendBuffered are the bytes written and not yet acknowledged.
	sendBuffered int
	sack         []header.SACKBlock
}

type tcpReader struct {
	ok bool
	// Offsets in tcp.Endpoint: of the *sender, the *receiver, the send
	// queue's lock and state, the SACK blocks and the transmit hash.
	snd, rcv, sndQueueMu, sndBufState, sack, hash uintptr
	// Offsets in sender and receiver of their exported state.
	senderState, receiverState uintptr
	// sndQueueMuType is the send queue lock's type, which has Lock and
	// Unlock.
	sndQueueMuType reflect.Type
}

var tcpFields = findTCPFields()

// field finds a field of t by name and, when want is not nil, checks its
// type.
func field(t reflect.Type, name string, want reflect.Type) (reflect.StructField, bool) {
	f, ok := t.FieldByName(name)
	if !ok || len(f.Index) != 1 || (want != nil && f.Type != want) {
		return reflect.StructField{}, false
	}
	return f, true
}

func findTCPFields() tcpReader {
	var r tcpReader
	ep := reflect.TypeFor[tcp.Endpoint]()
	snd, ok1 := field(ep, "snd", nil)
	rcv, ok2 := field(ep, "rcv", nil)
	queue, ok3 := field(ep, "sndQueueInfo", nil)
	sack, ok4 := field(ep, "sack", reflect.TypeFor[tcp.SACKInfo]())
	hash, ok5 := field(ep, "txHash", reflect.TypeFor[uint32]())
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || snd.Type.Kind() != reflect.Pointer || rcv.Type.Kind() != reflect.Pointer || queue.Type.Kind() != reflect.Struct {
		return r
	}
	sender, ok1 := field(snd.Type.Elem(), "TCPSenderState", reflect.TypeFor[tcp.TCPSenderState]())
	receiver, ok2 := field(rcv.Type.Elem(), "TCPReceiverState", reflect.TypeFor[tcp.TCPReceiverState]())
	mu, ok3 := field(queue.Type, "sndQueueMu", nil)
	bufState, ok4 := field(queue.Type, "TCPSndBufState", reflect.TypeFor[tcp.TCPSndBufState]())
	if !ok1 || !ok2 || !ok3 || !ok4 || !reflect.PointerTo(mu.Type).Implements(reflect.TypeFor[locker]()) {
		return r
	}
	return tcpReader{
		ok:  true,
		snd: snd.Offset, rcv: rcv.Offset, sndQueueMu: queue.Offset + mu.Offset, sndBufState: queue.Offset + bufState.Offset,
		sack: sack.Offset, hash: hash.Offset,
		senderState: sender.Offset, receiverState: receiver.Offset,
		sndQueueMuType: mu.Type,
	}
}

type locker interface {
	Lock()
	Unlock()
}

// txHash is the hash the netstack puts on every packet of ep, from which
// the link endpoint picks the transmit queue. It is set when the
// endpoint is made and never changes.
func (r tcpReader) txHash(ep *tcp.Endpoint) (uint32, bool) {
	if !r.ok {
		return 0, false
	}
	return *(*uint32)(unsafe.Add(unsafe.Pointer(ep), r.hash)), true
}

// read copies ep's internals under its locks, as completeStateLocked
// does. A listener or an endpoint not yet connected has no sender or
// receiver: ok is false.
func (r tcpReader) read(ep *tcp.Endpoint) (in tcpInternals, ok bool) {
	if !r.ok {
		return in, false
	}
	base := unsafe.Pointer(ep)
	ep.LockUser()
	defer ep.UnlockUser()
	snd := *(*unsafe.Pointer)(unsafe.Add(base, r.snd))
	rcv := *(*unsafe.Pointer)(unsafe.Add(base, r.rcv))
	if snd == nil || rcv == nil {
		return in, false
	}
	in.sender = *(*tcp.TCPSenderState)(unsafe.Add(snd, r.senderState))
	in.receiver = *(*tcp.TCPReceiverState)(unsafe.Add(rcv, r.receiverState))
	sack := (*tcp.SACKInfo)(unsafe.Add(base, r.sack))
	in.sack = append([]header.SACKBlock(nil), sack.Blocks[:sack.NumBlocks]...)
	lock := reflect.NewAt(r.sndQueueMuType, unsafe.Add(base, r.sndQueueMu)).Interface().(locker)
	lock.Lock()
	in.sendBuffered = (*tcp.TCPSndBufState)(unsafe.Add(base, r.sndBufState)).SndBufUsed
	lock.Unlock()
	return in, true
}

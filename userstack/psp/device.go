package psp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// maxRxSAs bounds the cache of receiving SAs. Past it an arbitrary entry
// goes: it is rebuilt from the master key when its SPI comes back.
const maxRxSAs = 1 << 16

// Device is one PSP endpoint, like a Linux psp_dev: it holds the two master
// keys, derives the key of every SPI it receives on (so it keeps no per-SA
// key state but a cache), allocates SPIs, rotates master keys, and keeps
// the totals of its SAs' counters.
type Device struct {
	mu     sync.RWMutex
	slots  [2]keySlotState
	active int // the slot new SPIs come from
	rx     map[rxKey]*SA

	total     Counters
	rotations atomic.Uint64
	rand      io.Reader // master key source; crypto/rand
}

type keySlotState struct {
	key     MasterKey // kept only for MasterKeys (--debug-keys)
	kdf     kdf
	live    bool   // false once rotated out and not yet replaced
	nextSPI uint32 // low 31 bits of the next SPI to allocate
}

type rxKey struct {
	spi uint32
	v   Version
}

// NewDevice starts a device with master keys k0 and k1; SPIs are allocated
// under k0 until the first rotation.
func NewDevice(k0, k1 MasterKey) *Device {
	d := &Device{rx: make(map[rxKey]*SA), rand: rand.Reader}
	for i, k := range [2]*MasterKey{&k0, &k1} {
		d.slots[i] = keySlotState{key: *k, kdf: newKDF(k), live: true, nextSPI: 1}
	}
	return d
}

// NewDeviceRandom starts a device with a random master key in slot 0 and
// slot 1 unused, the way a gateway starts.
func NewDeviceRandom() (*Device, error) {
	var k MasterKey
	if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
		return nil, fmt.Errorf("new psp device: read master key: %w", err)
	}
	d := NewDevice(k, MasterKey{})
	d.retire(1)
	return d, nil
}

// AllocSPI allocates the next SPI under the active master key and returns
// it with its key for version v: what the peer needs to send to us.
func (d *Device) AllocSPI(v Version) (uint32, []byte, error) {
	if !v.Valid() {
		return 0, nil, fmt.Errorf("allocate spi: %w %d", ErrVersion, uint8(v))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &d.slots[d.active]
	if s.nextSPI > spiKeyBit-1 {
		return 0, nil, fmt.Errorf("allocate spi: %w (rotate the master keys)", ErrSPIExhausted)
	}
	spi := uint32(d.active)<<31 | s.nextSPI
	s.nextSPI++
	key := make([]byte, v.KeyLen())
	s.kdf.derive(key, spi, v)
	return spi, key, nil
}

// Rotate puts a new random master key in the slot that is not active and
// makes it active. SAs under the previous key keep working until Retire, or
// until the next Rotate replaces that key.
func (d *Device) Rotate() error {
	var k MasterKey
	if _, err := io.ReadFull(d.rand, k[:]); err != nil {
		return fmt.Errorf("rotate master keys: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	slot := 1 - d.active
	d.retire(slot)
	d.slots[slot] = keySlotState{key: k, kdf: newKDF(&k), live: true, nextSPI: 1}
	d.active = slot
	d.rotations.Add(1)
	return nil
}

// Retire ends the previous master key: its SAs are refused (ErrRetiredKey)
// and its slot waits for the next Rotate.
func (d *Device) Retire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.retire(1 - d.active)
}

func (d *Device) retire(slot int) {
	d.slots[slot] = keySlotState{}
	for key := range d.rx {
		if keySlot(key.spi) == slot {
			delete(d.rx, key)
		}
	}
}

// RunRotation rotates the master keys every interval until ctx ends.
func (d *Device) RunRotation(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.Rotate(); err != nil {
				return err
			}
		}
	}
}

// ActiveKey is the slot (0 or 1, the top bit of the SPIs) new SPIs come
// from.
func (d *Device) ActiveKey() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.active
}

// MasterKeys are the two master keys as they are now, a retired one
// zero, in the form ParseMasterKeys reads ("HEX0,HEX1"): for decrypting
// a capture offline. Only an operator who asked for it may see them.
func (d *Device) MasterKeys() string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return hex.EncodeToString(d.slots[0].key[:]) + "," + hex.EncodeToString(d.slots[1].key[:])
}

// Rotations counts the master key rotations ("key-rotations" in Linux).
func (d *Device) Rotations() uint64 { return d.rotations.Load() }

// NewTxSA builds a sending SA whose counters add to the device's totals.
func (d *Device) NewTxSA(spi uint32, v Version, key []byte) (*SA, error) {
	sa, err := NewSA(spi, v, key)
	if err != nil {
		return nil, err
	}
	sa.total = &d.total
	return sa, nil
}

// Stats reads the device's totals.
func (d *Device) Stats() Stats { return d.total.Snapshot() }

// EachRxSA calls fn for every receiving SA in the cache.
func (d *Device) EachRxSA(fn func(sa *SA)) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, sa := range d.rx {
		fn(sa)
	}
}

// rxSA finds or derives the receiving SA for spi and v.
func (d *Device) rxSA(spi uint32, v Version) (*SA, error) {
	key := rxKey{spi, v}
	d.mu.RLock()
	sa, ok := d.rx[key]
	d.mu.RUnlock()
	if ok {
		return sa, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if sa, ok := d.rx[key]; ok {
		return sa, nil
	}
	s := &d.slots[keySlot(spi)]
	if !s.live {
		return nil, ErrRetiredKey
	}
	var buf [32]byte
	s.kdf.derive(buf[:v.KeyLen()], spi, v)
	sa, err := NewSA(spi, v, buf[:v.KeyLen()])
	if err != nil {
		return nil, err
	}
	sa.total = &d.total
	if len(d.rx) >= maxRxSAs {
		for k := range d.rx {
			delete(d.rx, k)
			break
		}
	}
	d.rx[key] = sa
	return sa, nil
}

// Decrypt verifies and unwraps the PSP packet in the Ethernet frame into
// dst, which must not overlap frame and needs len(frame) bytes at most. It
// returns the length of the frame written and the PSP header, whose SPI
// and S bit the caller may act on. The ICV is always verified, even when
// nothing is encrypted. ErrNotPSP leaves the counters alone; every other
// refusal is counted.
func (d *Device) Decrypt(dst, frame []byte) (int, Header, error) {
	var r rxPacket
	if err := parseRx(frame, &r); err != nil {
		if err != ErrNotPSP {
			d.total.rxFail(err)
		}
		return 0, r.hdr, err
	}
	sa, err := d.rxSA(r.hdr.SPI, r.hdr.Version)
	if err != nil {
		d.total.rxFail(err)
		return 0, r.hdr, err
	}
	n, err := sa.decrypt(dst, frame, &r)
	if err != nil {
		sa.rxFail(err)
		return 0, r.hdr, err
	}
	sa.rxCount(len(r.psp) - HeaderLen - ICVLen)
	return n, r.hdr, nil
}

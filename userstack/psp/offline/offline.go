// Package offline encrypts and decrypts pcap files with package psp, as
// Google's reference tools psp_encrypt and psp_decrypt do, and reads the
// reference's config format: for operators and for interop checks. It
// writes its output to a temporary file and renames it into place only when
// every frame went through, so a failed run leaves nothing misleading.
package offline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpstack/xdpstack/internal/atomicfile"
	"github.com/xdpstack/xdpstack/userstack/psp"
)

// Config is what encryption needs.
type Config struct {
	MasterKeys [2]psp.MasterKey // the receiver's; the SPI's top bit picks one
	SPI        uint32
	Version    psp.Version
	Encap      psp.Encap
	FirstIV    uint64 // the IV of the first frame; the reference starts at 1
}

// Validate says what is wrong with c, if anything.
func (c *Config) Validate() error {
	if !c.Version.Valid() {
		return fmt.Errorf("psp version %d: want 0, 1, 2 or 3", c.Version)
	}
	if c.FirstIV == 0 {
		return errors.New("first iv 0: ivs start at 1")
	}
	return c.Encap.Validate()
}

// Summary counts the frames of a run.
type Summary struct {
	Frames  int // written to the output
	Skipped int // not IP (encrypt) or not PSP (decrypt), left out
}

// maxFrame bounds the frames read: the largest IP packet and its headers.
const maxFrame = 0xffff + 64

// Encrypt reads frames from in and writes each, wrapped in PSP as c says,
// to out; frames that are not IP are skipped, as the reference skips them.
// Frames are numbered from 1 in errors, as Wireshark numbers them.
func Encrypt(in io.Reader, out io.Writer, c *Config) (Summary, error) {
	var sum Summary
	if err := c.Validate(); err != nil {
		return sum, fmt.Errorf("encrypt: %w", err)
	}
	key, err := psp.DeriveKey(&c.MasterKeys, c.SPI, c.Version)
	if err != nil {
		return sum, fmt.Errorf("encrypt: %w", err)
	}
	sa, err := psp.NewSA(c.SPI, c.Version, key)
	if err != nil {
		return sum, fmt.Errorf("encrypt: %w", err)
	}
	if err := sa.SetNextIV(c.FirstIV); err != nil {
		return sum, fmt.Errorf("encrypt: %w", err)
	}
	dst := make([]byte, maxFrame+psp.EncapLen(&psp.Encap{Mode: psp.Tunnel, VC: true}, true))
	err = transform(in, out, func(i int, frame []byte) ([]byte, error) {
		n, err := sa.Encrypt(dst, frame, &c.Encap)
		switch {
		case errors.Is(err, psp.ErrNotIP):
			sum.Skipped++
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("encrypt frame %d: %w%s", i, err, hint(err))
		}
		sum.Frames++
		return dst[:n], nil
	})
	return sum, err
}

// Decrypt reads PSP frames from in, verifies and unwraps each with the keys
// that master keys derive, and writes them to out; frames that are not PSP
// are skipped, as the reference skips them. The first frame that does not
// verify ends the run with an error that names it and the syndrome.
func Decrypt(in io.Reader, out io.Writer, keys *[2]psp.MasterKey) (Summary, error) {
	var sum Summary
	d := psp.NewDevice(keys[0], keys[1])
	dst := make([]byte, maxFrame)
	err := transform(in, out, func(i int, frame []byte) ([]byte, error) {
		n, h, err := d.Decrypt(dst, frame)
		switch {
		case errors.Is(err, psp.ErrNotPSP):
			sum.Skipped++
			return nil, nil
		case errors.Is(err, psp.ErrAuth):
			return nil, fmt.Errorf("decrypt frame %d: %w (spi %08x, %v: wrong master keys, or the frame was changed)", i, err, h.SPI, h.Version)
		case err != nil:
			return nil, fmt.Errorf("decrypt frame %d: %w%s", i, err, hint(err))
		}
		sum.Frames++
		return dst[:n], nil
	})
	return sum, err
}

func hint(err error) string {
	switch {
	case errors.Is(err, psp.ErrVersion):
		return " (psp defines versions 0 to 3)"
	case errors.Is(err, psp.ErrTruncated):
		return " (the frame is shorter than its headers say)"
	case errors.Is(err, psp.ErrBadHeader):
		return " (malformed ip, udp or psp header)"
	case errors.Is(err, psp.ErrCryptOffset):
		return " (lower the crypt offset)"
	case errors.Is(err, psp.ErrUnsupported):
		return " (use tunnel mode)"
	case errors.Is(err, psp.ErrIVExhausted):
		return " (start from a lower iv)"
	}
	return ""
}

// transform runs fn over every frame of the pcap or pcapng stream in and
// writes what it returns (nil: nothing) to out as classic pcap, keeping
// timestamps.
func transform(in io.Reader, out io.Writer, fn func(i int, frame []byte) ([]byte, error)) error {
	r, err := newReader(in)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(out)
	if err := w.WriteFileHeader(maxFrame, layers.LinkTypeEthernet); err != nil {
		return fmt.Errorf("write pcap header: %w", err)
	}
	for i := 1; ; i++ {
		frame, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read frame %d: %w", i, err)
		}
		if ci.CaptureLength != ci.Length {
			return fmt.Errorf("read frame %d: captured %d of %d bytes (capture again with a larger snaplen)", i, ci.CaptureLength, ci.Length)
		}
		res, err := fn(i, frame)
		if err != nil {
			return err
		}
		if res == nil {
			continue
		}
		ci.CaptureLength, ci.Length = len(res), len(res)
		if err := w.WritePacket(ci, res); err != nil {
			return fmt.Errorf("write frame %d: %w", i, err)
		}
	}
}

type packetReader interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// newReader opens classic pcap or pcapng, Ethernet only.
func newReader(in io.Reader) (packetReader, error) {
	br := bufio.NewReader(in)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("read pcap header: %w (not a pcap file?)", err)
	}
	var r packetReader
	var link layers.LinkType
	if string(magic) == "\x0a\x0d\x0d\x0a" {
		ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
		if err != nil {
			return nil, fmt.Errorf("read pcapng header: %w", err)
		}
		r, link = ng, ng.LinkType()
	} else {
		pc, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read pcap header: %w (not a pcap file?)", err)
		}
		r, link = pc, pc.LinkType()
	}
	if link != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("read pcap header: link type %v (only Ethernet captures are supported)", link)
	}
	return r, nil
}

// EncryptFile is Encrypt from file to file.
func EncryptFile(inPath, outPath string, c *Config) (Summary, error) {
	var sum Summary
	err := withFiles(inPath, outPath, func(in io.Reader, out io.Writer) (err error) {
		sum, err = Encrypt(in, out, c)
		return err
	})
	return sum, err
}

// DecryptFile is Decrypt from file to file.
func DecryptFile(inPath, outPath string, keys *[2]psp.MasterKey) (Summary, error) {
	var sum Summary
	err := withFiles(inPath, outPath, func(in io.Reader, out io.Writer) (err error) {
		sum, err = Decrypt(in, out, keys)
		return err
	})
	return sum, err
}

// withFiles runs fn from inPath to a temporary file beside outPath, which
// becomes outPath only if fn succeeds: a failed run leaves outPath as it
// was. The output respects the umask.
func withFiles(inPath, outPath string, fn func(io.Reader, io.Writer) error) error {
	in, err := os.Open(inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := atomicfile.Create(outPath, 0o644)
	if err != nil {
		return err
	}
	defer out.Abort()
	bw := bufio.NewWriter(out)
	if err := fn(in, bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return out.Commit()
}

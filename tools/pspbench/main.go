// Command pspbench measures PSP encrypt and decrypt throughput on one core
// against AES-GCM from Go's crypto library alone on the same sizes, the
// ceiling, and prints a markdown table. Each cell runs for -duration.
//
//	go run ./tools/pspbench [-duration 1s] [-version 0]
package main

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

func main() {
	duration := flag.Duration("duration", time.Second, "how long each cell runs")
	version := flag.Uint("version", 0, "PSP version: 0 aes-gcm-128, 1 aes-gcm-256 (2 and 3 only authenticate)")
	flag.Parse()
	v := psp.Version(*version)
	if !v.Valid() || !v.Encrypts() {
		fmt.Fprintf(os.Stderr, "pspbench: -version %d: want 0 or 1 (the ceiling is AES-GCM)\n", *version)
		os.Exit(2)
	}
	if err := run(v, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "pspbench:", err)
		os.Exit(1)
	}
}

// rate is what one cell measured.
type rate struct{ pps, gbps float64 }

// measure runs a (PSP) and b (AES-GCM alone) in alternating slices of 10 ms
// until each has run for d, so that both see the same machine: other work
// on a shared host slows both alike and the ratio holds. size is the bytes
// each op carries, counted for Gbit/s.
func measure(d time.Duration, size int, a, b func()) (rate, rate) {
	const batch = 64
	var ops [2]int
	var spent [2]time.Duration
	for _, op := range []func(){a, b} { // warm up
		for range batch {
			op()
		}
	}
	for spent[0] < d || spent[1] < d {
		for i, op := range []func(){a, b} {
			start := time.Now()
			for time.Since(start) < 10*time.Millisecond {
				for range batch {
					op()
				}
				ops[i] += batch
			}
			spent[i] += time.Since(start)
		}
	}
	var r [2]rate
	for i := range r {
		secs := spent[i].Seconds()
		r[i] = rate{pps: float64(ops[i]) / secs, gbps: float64(ops[i]*size) * 8 / secs / 1e9}
	}
	return r[0], r[1]
}

func run(v psp.Version, d time.Duration) error {
	var k0, k1 psp.MasterKey
	for i := range k0 {
		k0[i], k1[i] = byte(i), byte(i*7)
	}
	dev := psp.NewDevice(k0, k1)
	spi, key, err := dev.AllocSPI(v)
	if err != nil {
		return err
	}
	sa, err := dev.NewTxSA(spi, v, key)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	// Tunnel mode, no crypt offset: PSP encrypts exactly the inner packet,
	// as the raw AES-GCM cell does, with the 16-byte PSP header as AAD.
	e := psp.Encap{Mode: psp.Tunnel}
	fmt.Printf("PSP %v, tunnel mode, one core (one goroutine), %s per cell, PSP and AES-GCM alone interleaved in 10 ms slices; %s, %s/%s, %s\n\n",
		v, d, runtime.Version(), runtime.GOOS, runtime.GOARCH, cpuModel())
	fmt.Println("| inner packet | op | psp Mpps | psp Gbit/s | aes-gcm Mpps | aes-gcm Gbit/s | psp / aes-gcm |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---:|")
	for _, size := range []int{64, 512, 1400} {
		frame := psptest.Packet(false, psptest.UDP, size-28) // IPv4 and UDP headers are 28 bytes
		enc := make([]byte, len(frame)+psp.EncapLen(&e, false))
		dec := make([]byte, len(enc))
		n, err := sa.Encrypt(enc, frame, &e)
		if err != nil {
			return fmt.Errorf("encrypt %d-byte packet: %w", size, err)
		}
		enc = enc[:n]
		if _, _, err := dev.Decrypt(dec, enc); err != nil {
			return fmt.Errorf("decrypt %d-byte packet: %w", size, err)
		}
		nonce := make([]byte, gcm.NonceSize())
		aad := make([]byte, psp.HeaderLen)
		plain := make([]byte, size)
		sealed := gcm.Seal(nil, nonce, plain, aad)
		out := make([]byte, len(sealed))
		pspEnc, rawSeal := measure(d, size,
			func() { sa.Encrypt(enc, frame, &e) },
			func() { gcm.Seal(out[:0], nonce, plain, aad) })
		pspDec, rawOpen := measure(d, size,
			func() { dev.Decrypt(dec, enc) },
			func() { gcm.Open(out[:0], nonce, sealed, aad) })
		if s := dev.Stats(); s.RxAuthFail+s.RxError+s.RxBad+s.TxError != 0 {
			return fmt.Errorf("%d-byte packets: failures counted while measuring: %+v", size, s)
		}
		row(size, "encrypt", pspEnc, rawSeal)
		row(size, "decrypt", pspDec, rawOpen)
	}
	return nil
}

func row(size int, op string, p, raw rate) {
	fmt.Printf("| %d B | %s | %.3f | %.2f | %.3f | %.2f | %.2f× |\n",
		size, op, p.pps/1e6, p.gbps, raw.pps/1e6, raw.gbps, p.pps/raw.pps)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "cpu unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "cpu unknown"
}

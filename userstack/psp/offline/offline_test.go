package offline

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xdpstack/xdpstack/userstack/psp"
	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// The reference's config files say what case.json says.
func TestReadConfigFile(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		if c.Kind != "roundtrip" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			got, err := ReadConfigFile(c.Path("encrypt.cfg"))
			if err != nil {
				t.Fatalf("ReadConfigFile: %v", err)
			}
			want := caseConfig(t, &c)
			if got != want {
				t.Errorf("ReadConfigFile(%s) =\n%+v\nwant\n%+v", c.Path("encrypt.cfg"), got, want)
			}
		})
	}
}

func caseConfig(t *testing.T, c *psptest.Case) Config {
	t.Helper()
	keys, err := psp.ParseMasterKeys(c.MasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	spi, err := psp.ParseSPI(c.SPI)
	if err != nil {
		t.Fatal(err)
	}
	mode, err := psp.ParseMode(c.Mode)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{MasterKeys: keys, SPI: spi, Version: psp.Version(c.PSPVersion), FirstIV: c.IVFirst}
	cfg.Encap = psp.Encap{Mode: mode, VC: c.VCPresent, CryptOffset4: c.CryptOffset.Transport, CryptOffset6: c.CryptOffset.Transport}
	if mode == psp.Tunnel {
		cfg.Encap.CryptOffset4, cfg.Encap.CryptOffset6 = c.CryptOffset.IPv4Tunnel, c.CryptOffset.IPv6Tunnel
	}
	return cfg
}

func TestParseConfigRefuses(t *testing.T) {
	key := strings.Repeat("ab ", 32) + "\n"
	good := key + key + "9A345678\ntransport\naes-gcm-128\n1\n6\n11\nno-vc\n"
	if _, err := ParseConfig(strings.NewReader(good)); err != nil {
		t.Fatalf("ParseConfig(good): %v", err)
	}
	tests := []struct {
		name, cfg, want string
	}{
		{"empty", "", "master key 0 byte 0 missing"},
		{"short key", strings.Repeat("ab ", 40), "master key 1 byte 8 missing"},
		{"bad key byte", strings.Replace(good, "ab", "xy", 1), "line 1: master key 0 byte 0"},
		{"bad spi", strings.Replace(good, "9A345678", "9A34567Z", 1), "line 3: parse spi"},
		{"bad mode", strings.Replace(good, "transport", "transit", 1), "line 4: parse mode"},
		{"bad algorithm", strings.Replace(good, "aes-gcm-128", "aes-cbc", 1), "line 5: algorithm"},
		{"offset 64", strings.Replace(good, "\n6\n", "\n64\n", 1), "line 7: ipv4 tunnel crypt offset"},
		{"bad vc", strings.Replace(good, "no-vc", "cookie", 1), "line 9: \"cookie\""},
		{"trailing", good + "extra\n", "line 10: \"extra\" after the last item"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.cfg))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig: err = %v, want one that says %q", err, tc.want)
			}
		})
	}
}

func TestEncryptFile(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		if c.Kind != "roundtrip" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			cfg, err := ReadConfigFile(c.Path("encrypt.cfg"))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.pcap")
			sum, err := EncryptFile(c.Path("cleartext.pcap"), out, &cfg)
			if err != nil {
				t.Fatalf("EncryptFile: %v", err)
			}
			want := psptest.Frames(t, c.Path("encrypted.pcap"))
			if sum != (Summary{Frames: len(want)}) {
				t.Errorf("EncryptFile summary = %+v, want %d frames", sum, len(want))
			}
			psptest.EqualFrames(t, psptest.Frames(t, out), want)
		})
	}
}

func TestDecryptFile(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			keys, err := psp.ParseMasterKeys(c.MasterKeys())
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.pcap")
			if err := os.WriteFile(out, []byte("before"), 0o644); err != nil {
				t.Fatal(err)
			}
			sum, err := DecryptFile(c.Path("encrypted.pcap"), out, &keys)
			if c.Expected.Decrypt == "auth_fail" {
				if !errors.Is(err, psp.ErrAuth) || !strings.HasPrefix(err.Error(), "decrypt frame 1: authentication failed (spi ") {
					t.Fatalf("DecryptFile: err = %v, want frame 1 named with %v", err, psp.ErrAuth)
				}
				if b, _ := os.ReadFile(out); string(b) != "before" {
					t.Errorf("DecryptFile failed but changed %s", out)
				}
				noTempFiles(t, filepath.Dir(out))
				return
			}
			if err != nil {
				t.Fatalf("DecryptFile: %v", err)
			}
			want := psptest.Frames(t, c.Path("cleartext.pcap"))
			if sum != (Summary{Frames: len(want)}) {
				t.Errorf("DecryptFile summary = %+v, want %d frames", sum, len(want))
			}
			psptest.EqualFrames(t, psptest.Frames(t, out), want)
		})
	}
}

// Frames that are not IP (encrypt) or not PSP (decrypt) are left out and
// counted, as the reference does.
func TestSkips(t *testing.T) {
	dir := t.TempDir()
	arp := psptest.Packet(false, psptest.UDP, 10)
	arp[12], arp[13] = 0x08, 0x06
	frames := [][]byte{psptest.Packet(false, psptest.UDP, 10), arp, psptest.Packet(true, psptest.TCP, 100)}
	clear := filepath.Join(dir, "clear.pcap")
	psptest.WriteFrames(t, clear, frames)
	cfg := Config{SPI: 0x80000005, Version: psp.V3, FirstIV: 7, Encap: psp.Encap{Mode: psp.Tunnel}}
	enc := filepath.Join(dir, "enc.pcap")
	sum, err := EncryptFile(clear, enc, &cfg)
	if err != nil || sum != (Summary{Frames: 2, Skipped: 1}) {
		t.Fatalf("EncryptFile = %+v, %v; want 2 frames, 1 skipped", sum, err)
	}
	// Decrypt what was encrypted, with the plain frames between.
	mixed := append(psptest.Frames(t, enc), frames[0])
	psptest.WriteFrames(t, enc, mixed)
	dec := filepath.Join(dir, "dec.pcap")
	sum, err = DecryptFile(enc, dec, &cfg.MasterKeys)
	if err != nil || sum != (Summary{Frames: 2, Skipped: 1}) {
		t.Fatalf("DecryptFile = %+v, %v; want 2 frames, 1 skipped", sum, err)
	}
	psptest.EqualFrames(t, psptest.Frames(t, dec), [][]byte{frames[0], frames[2]})
}

func TestPcapng(t *testing.T) {
	for _, c := range psptest.Cases(t)[:1] {
		keys, _ := psp.ParseMasterKeys(c.MasterKeys())
		var ng bytes.Buffer
		w, err := pcapgo.NewNgWriter(&ng, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range psptest.Frames(t, c.Path("encrypted.pcap")) {
			if err := w.WritePacket(gopacket.CaptureInfo{CaptureLength: len(f), Length: len(f)}, f); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		var out bytes.Buffer
		if _, err := Decrypt(&ng, &out, &keys); err != nil {
			t.Fatalf("Decrypt(pcapng): %v", err)
		}
		path := filepath.Join(t.TempDir(), "out.pcap")
		os.WriteFile(path, out.Bytes(), 0o644)
		psptest.EqualFrames(t, psptest.Frames(t, path), psptest.Frames(t, c.Path("cleartext.pcap")))
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	notPcap := filepath.Join(dir, "x.pcap")
	os.WriteFile(notPcap, []byte("this is not a capture file"), 0o644)
	truncated := filepath.Join(dir, "t.pcap")
	psptest.WriteFrames(t, truncated, [][]byte{psptest.Packet(false, psptest.UDP, 10)})
	b, _ := os.ReadFile(truncated)
	os.WriteFile(truncated, b[:len(b)-3], 0o644)
	var keys [2]psp.MasterKey
	tests := []struct {
		name, in, want string
	}{
		{"not pcap", notPcap, "read pcap header"},
		{"missing", filepath.Join(dir, "missing.pcap"), "no such file"},
		{"cut short", truncated, "read frame 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".out.pcap")
			_, err := DecryptFile(tc.in, out, &keys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecryptFile(%s): err = %v, want one that says %q", tc.in, err, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("DecryptFile failed but %s exists", out)
			}
		})
	}
	noTempFiles(t, dir)
}

func noTempFiles(t *testing.T, dir string) {
	t.Helper()
	tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(tmps) > 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}
}

// TestOutputMode: outputs take their mode from the umask, as every
// other program's do (a decrypted capture holds cleartext traffic), and
// a folder is no place to write one.
func TestOutputMode(t *testing.T) {
	c := psptest.Cases(t)[0]
	keys, err := psp.ParseMasterKeys(c.MasterKeys())
	if err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	out := filepath.Join(dir, "out.pcap")
	if _, err := EncryptFile(c.Path("cleartext.pcap"), out, &Config{MasterKeys: keys, SPI: 1, FirstIV: 1}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, %v; want 0600 under umask 077", out, st.Mode().Perm(), err)
	}
	if _, err := DecryptFile(c.Path("encrypted.pcap"), dir, &keys); err == nil || !strings.Contains(err.Error(), "is a folder") {
		t.Errorf("DecryptFile to a folder: got %v, want a refusal", err)
	}
	noTempFiles(t, dir)
}

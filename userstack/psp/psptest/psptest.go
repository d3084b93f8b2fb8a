// Package psptest loads the PSP known-answer set, shared/testdata/psp, that
// Google's reference tools produced, for the tests of package psp, its
// offline tools and the CLI.
package psptest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Case is one folder of the set, as its case.json describes it.
type Case struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"` // roundtrip or corrupted
	MasterKey0  string `json:"master_key0"`
	MasterKey1  string `json:"master_key1"`
	SPI         string `json:"spi"`
	PSPVersion  int    `json:"psp_version"`
	Mode        string `json:"mode"`
	VCPresent   bool   `json:"vc_present"`
	IVFirst     uint64 `json:"iv_first"`
	DerivedKey  string `json:"derived_key"`
	CryptOffset struct {
		Transport  uint8 `json:"transport"`
		IPv4Tunnel uint8 `json:"ipv4_tunnel"`
		IPv6Tunnel uint8 `json:"ipv6_tunnel"`
	} `json:"crypt_offset_config"`
	KDFInputBlocks []string `json:"kdf_input_blocks"`
	Packets        []struct {
		IV        string `json:"iv"`
		PSPHeader string `json:"psp_header"`
		ICV       string `json:"icv"`
	} `json:"packets"`
	Expected struct {
		Decrypt string `json:"decrypt"` // ok or auth_fail
	} `json:"expected"`

	// Dir is the case's folder.
	Dir string `json:"-"`
}

// Path names a file of the case: cleartext.pcap, encrypted.pcap, encrypt.cfg.
func (c *Case) Path(name string) string { return filepath.Join(c.Dir, name) }

// MasterKeys is the "HEX0,HEX1" form of the case's master keys.
func (c *Case) MasterKeys() string { return c.MasterKey0 + "," + c.MasterKey1 }

// Dir is the set's folder, found from this file: shared/ stands beside the
// repository. The test is skipped when the folder is absent.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := FindDir()
	if err != nil {
		t.Skipf("psp known-answer set: %v", err)
	}
	return dir
}

// FindDir is Dir for callers that go on without the set.
func FindDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate the source tree")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "testdata", "psp")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		return "", fmt.Errorf("not found at %s (shared/ beside the repository): %w", dir, err)
	}
	return dir, nil
}

// Cases reads every case listed in the set's index.json.
func Cases(t testing.TB) []Case {
	t.Helper()
	dir := Dir(t)
	var index struct {
		Cases []struct {
			Name string `json:"name"`
		} `json:"cases"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	if len(index.Cases) == 0 {
		t.Fatalf("psp known-answer set %s lists no cases", dir)
	}
	cases := make([]Case, len(index.Cases))
	for i, c := range index.Cases {
		cases[i].Dir = filepath.Join(dir, c.Name)
		readJSON(t, cases[i].Path("case.json"), &cases[i])
	}
	return cases
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// Frames reads every frame of a classic pcap file.
func Frames(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var frames [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatalf("read %s frame %d: %v", path, len(frames)+1, err)
		}
		frames = append(frames, data)
	}
}

// Unhex decodes hex from the case files.
func Unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("decode hex %q: %v", s, err)
	}
	return b
}

// WriteFrames writes frames to a classic pcap file at path.
func WriteFrames(t testing.TB, path string, frames [][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{CaptureLength: len(fr), Length: len(fr)}
		if err := w.WritePacket(ci, fr); err != nil {
			t.Fatal(err)
		}
	}
}

// EqualFrames fails t unless got and want hold the same frames.
func EqualFrames(t testing.TB, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("frame %d =\n%x\nwant\n%x", i+1, got[i], want[i])
		}
	}
}

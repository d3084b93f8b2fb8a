package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpstack/xdpstack/internal/testing/testutil"
	"github.com/xdpstack/xdpstack/userstack/psp/psptest"
)

// xdpstack is the binary under test, built once by TestMain.
var xdpstack string

func TestMain(m *testing.M) {
	path, remove, err := testutil.BuildBinary(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xdpstack = path
	code := m.Run()
	remove()
	os.Exit(code)
}

// run runs the binary and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runEnv(t, nil, args...)
}

// runEnv is run with env added to the environment.
func runEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(xdpstack, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run xdpstack %v: %v", args, err)
	return 0, "", ""
}

func TestPSPDerive(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		if c.DerivedKey == "" {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			args := []string{"psp", "derive", "--master-keys", c.MasterKeys(), "--spi", c.SPI, "--version", strconv.Itoa(c.PSPVersion)}
			code, out, errOut := run(t, args...)
			if code != 0 || out != c.DerivedKey+"\n" {
				t.Errorf("xdpstack %v: exit %d, stdout %q, stderr %q; want exit 0 and %s", args, code, out, errOut, c.DerivedKey)
			}
		})
	}
}

func TestPSPEncrypt(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		if c.Kind != "roundtrip" {
			continue
		}
		offset := c.CryptOffset.Transport
		switch {
		case c.Mode == "tunnel" && strings.HasPrefix(c.Name, "v4"):
			offset = c.CryptOffset.IPv4Tunnel
		case c.Mode == "tunnel":
			offset = c.CryptOffset.IPv6Tunnel
		}
		flags := []string{"--master-keys", c.MasterKeys(), "--spi", c.SPI, "--version", strconv.Itoa(c.PSPVersion),
			"--mode", c.Mode, "--crypt-offset", strconv.Itoa(int(offset))}
		if c.VCPresent {
			flags = append(flags, "--vc")
		}
		for _, how := range []struct {
			name  string
			flags []string
		}{
			{"cfg", []string{"--cfg", c.Path("encrypt.cfg")}},
			{"flags", flags},
		} {
			t.Run(c.Name+"/"+how.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out.pcap")
				args := append([]string{"psp", "encrypt", "-r", c.Path("cleartext.pcap"), "-w", out}, how.flags...)
				code, stdout, stderr := run(t, args...)
				if code != 0 {
					t.Fatalf("xdpstack %v: exit %d, stderr %q", args, code, stderr)
				}
				want := psptest.Frames(t, c.Path("encrypted.pcap"))
				if !strings.HasPrefix(stdout, "encrypted "+strconv.Itoa(len(want))+" frames") {
					t.Errorf("xdpstack %v: stdout %q", args, stdout)
				}
				psptest.EqualFrames(t, psptest.Frames(t, out), want)
			})
		}
	}
}

func TestPSPDecrypt(t *testing.T) {
	for _, c := range psptest.Cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcap")
			args := []string{"psp", "decrypt", "-r", c.Path("encrypted.pcap"), "-w", out, "--master-keys", c.MasterKeys()}
			code, _, stderr := run(t, args...)
			if c.Expected.Decrypt == "auth_fail" {
				if code != 1 || !strings.Contains(stderr, "decrypt frame 1: authentication failed") {
					t.Errorf("xdpstack %v: exit %d, stderr %q; want exit 1 naming frame 1 and the failure", args, code, stderr)
				}
				if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Errorf("xdpstack %v failed but wrote %s", args, out)
				}
				return
			}
			if code != 0 {
				t.Fatalf("xdpstack %v: exit %d, stderr %q", args, code, stderr)
			}
			psptest.EqualFrames(t, psptest.Frames(t, out), psptest.Frames(t, c.Path("cleartext.pcap")))
		})
	}
}

// Bad flags are refused before any file is read or written.
func TestPSPFlags(t *testing.T) {
	dir := psptest.Dir(t)
	c := filepath.Join(dir, "v4_transport_crypt_off_128")
	clear, cfg := filepath.Join(c, "cleartext.pcap"), filepath.Join(c, "encrypt.cfg")
	key := strings.Repeat("ab", 32)
	keys := key + "," + key
	enc := func(args ...string) []string {
		return append([]string{"psp", "encrypt", "-r", clear, "-w", "OUT"}, args...)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"encrypt without output", []string{"psp", "encrypt", "-r", clear, "--cfg", cfg}, "psp encrypt: --write missing"},
		{"encrypt without keys", enc("--spi", "1", "--version", "0", "--mode", "tunnel"), "psp encrypt: master keys missing"},
		{"encrypt bad spi", enc("--master-keys", keys, "--spi", "xyz", "--version", "0", "--mode", "tunnel"), `parse spi "xyz"`},
		{"encrypt version 4", enc("--master-keys", keys, "--spi", "1", "--version", "4", "--mode", "tunnel"), `parse psp version "4"`},
		{"encrypt bad mode", enc("--master-keys", keys, "--spi", "1", "--version", "0", "--mode", "tunel"), `parse mode "tunel"`},
		{"encrypt crypt offset 64", enc("--master-keys", keys, "--spi", "1", "--version", "0", "--mode", "tunnel", "--crypt-offset", "64"), "--crypt-offset 64"},
		{"encrypt iv 0", enc("--cfg", cfg, "--iv-start", "0"), "ivs start at 1"},
		{"encrypt cfg and spi", enc("--cfg", cfg, "--spi", "1"), "--cfg and --spi both given"},
		{"encrypt missing cfg", enc("--cfg", filepath.Join(c, "missing.cfg")), "no such file"},
		{"decrypt short key", []string{"psp", "decrypt", "-r", clear, "-w", "OUT", "--master-keys", key + "," + key[:10]}, "--master-keys: parse master key 1: 10 characters, want 64 hex digits"},
		{"decrypt one key", []string{"psp", "decrypt", "-r", clear, "-w", "OUT", "--master-keys", key}, "got 1 keys, want 2"},
		{"decrypt missing input", []string{"psp", "decrypt", "-r", filepath.Join(c, "missing.pcap"), "-w", "OUT", "--master-keys", keys}, "no such file"},
		{"derive without spi", []string{"psp", "derive", "--master-keys", keys, "--version", "1"}, "psp derive: --spi missing"},
		{"derive without anything", []string{"psp", "derive"}, "psp derive: --spi missing"},
		{"derive with an argument", []string{"psp", "derive", "--master-keys", keys, "--spi", "1", "--version", "1", "extra"}, `takes no arguments, got ["extra"]`},
		{"encrypt with an empty output", []string{"psp", "encrypt", "-r", clear, "-w", "", "--cfg", cfg}, "--write missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.pcap")
			for i, a := range tc.args {
				if a == "OUT" {
					tc.args[i] = out
				}
			}
			code, stdout, stderr := run(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 || stdout != "" {
				t.Errorf("xdpstack %v: exit %d, stdout %q, stderr %q; want non-zero and one line with %q", tc.args, code, stdout, stderr, tc.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("xdpstack %v failed but wrote %s", tc.args, out)
			}
		})
	}
}

// TestPSPMasterKeySources takes the master keys from a key file, from
// the environment and from the flag; a key file that others can read
// is refused, and no error shows a key, mistyped or not.
func TestPSPMasterKeySources(t *testing.T) {
	c := psptest.Cases(t)[0]
	if c.DerivedKey == "" {
		t.Fatalf("case %s has no derived key", c.Name)
	}
	derive := []string{"psp", "derive", "--spi", c.SPI, "--version", strconv.Itoa(c.PSPVersion)}
	dir := t.TempDir()
	keyFile := func(name, text string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	k0, k1, _ := strings.Cut(c.MasterKeys(), ",")
	good := keyFile("keys", k0+"\n"+k1+"\n", 0o600)
	open := keyFile("open", c.MasterKeys(), 0o644)
	typo := k1[:40] + "zz" + k1[42:]
	mistyped := keyFile("mistyped", k0+","+typo, 0o600)
	short := keyFile("short", k0+","+k1[:62], 0o400)

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string // stdout, or what stderr must hold
		ok   bool
	}{
		{"key file", nil, []string{"--key-file", good}, c.DerivedKey + "\n", true},
		{"environment", []string{masterKeysEnv + "=" + c.MasterKeys()}, nil, c.DerivedKey + "\n", true},
		{"flag", nil, []string{"--master-keys", c.MasterKeys()}, c.DerivedKey + "\n", true},
		{"key file over the environment", []string{masterKeysEnv + "=" + strings.Repeat("0", 129)}, []string{"--key-file", good}, c.DerivedKey + "\n", true},
		{"key file others can read", nil, []string{"--key-file", open}, "--key-file " + open + ": mode 0644 lets others than its owner at the keys (chmod 600 " + open + ")", false},
		{"missing key file", nil, []string{"--key-file", filepath.Join(dir, "none")}, "no such file", false},
		{"folder as key file", nil, []string{"--key-file", dir}, "not a regular file", false},
		{"key file and flag", nil, []string{"--key-file", good, "--master-keys", c.MasterKeys()}, "both given", false},
		{"mistyped key in a file", nil, []string{"--key-file", mistyped}, "--key-file " + mistyped + ": parse master key 1: not hex", false},
		{"short key in a file", nil, []string{"--key-file", short}, "parse master key 1: 62 characters, want 64 hex digits", false},
		{"mistyped key in the environment", []string{masterKeysEnv + "=" + k0 + "," + typo}, nil, masterKeysEnv + ": parse master key 1: not hex", false},
		{"mistyped key on the command line", nil, []string{"--master-keys", k0 + "," + typo}, "--master-keys: parse master key 1: not hex", false},
		{"no keys", nil, nil, "master keys missing (give --key-file FILE, or set " + masterKeysEnv + ")", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runEnv(t, tc.env, append(derive, tc.args...)...)
			if tc.ok {
				if code != 0 || stdout != tc.want {
					t.Errorf("exit %d, stdout %q, stderr %q; want %q", code, stdout, stderr, tc.want)
				}
				return
			}
			if code == 0 || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want one line with %q", code, stderr, tc.want)
			}
			for _, secret := range []string{k0[:16], k1[:16], k1[44:60]} {
				if strings.Contains(stderr, secret) {
					t.Errorf("stderr %q holds key material", stderr)
				}
			}
		})
	}
}

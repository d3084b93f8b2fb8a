package pspconfig

import (
	"flag"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func parseFlags(t *testing.T, args ...string) (Options, error) {
	t.Helper()
	set := flag.NewFlagSet("attach", flag.ContinueOnError)
	for _, f := range Flags() {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return FromCLI(cli.NewContext(cli.NewApp(), set, nil))
}

func TestFlagsDefaults(t *testing.T) {
	o, err := parseFlags(t, "--psp-plaintext")
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults
	want.Plaintext = true
	if o != want {
		t.Fatalf("options %+v, want %+v", o, want)
	}
	o, err = parseFlags(t, "--psp-cert=c", "--psp-key=k", "--psp-ca=a", "--inner-ip-type=ipv6", "--outer-ip-type=ipv4", "--psp-version=3", "--crypt-offset=6", "--psp-rotation=0")
	if err != nil || o.Inner != IPv6 || o.Outer != IPv4 || o.Version != 3 || o.CryptOffset != 6 || o.Rotation != 0 {
		t.Fatalf("%+v %v", o, err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "psp key exchange: needs --psp-cert, --psp-key and --psp-ca"},
		{[]string{"--psp-plaintext", "--psp-ca=x"}, "--psp-plaintext with --psp-cert/--psp-key/--psp-ca: give one or the other"},
		{[]string{"--psp-plaintext", "--psp-version=4"}, "--psp-version 4: want 0 to 3"},
		{[]string{"--psp-plaintext", "--psp-version=-1"}, "--psp-version -1: want 0 to 3"},
		{[]string{"--psp-plaintext", "--crypt-offset=64"}, "--crypt-offset 64: want 0 to 63"},
		{[]string{"--psp-plaintext", "--max-tunnels=0"}, "--max-tunnels 0: want 1 to"},
		{[]string{"--psp-plaintext", "--psp-sample-rate=17"}, "--psp-sample-rate 17: want 0 (off) to 16"},
		{[]string{"--psp-plaintext", "--inner-ip-type=ipx"}, `--inner-ip-type: ip type "ipx": want ipv4 or ipv6`},
		{[]string{"--psp-plaintext", "--outer-ip-type=4"}, `--outer-ip-type: ip type "4": want ipv4 or ipv6`},
		{[]string{"--psp-plaintext", "--psp-tun="}, `--psp-tun "": want a device name`},
		{[]string{"--psp-plaintext", "--psp-rotation=soon"}, `--psp-rotation "soon": not a duration`},
		{[]string{"--psp-plaintext", "--psp-rotation=1ms"}, "--psp-rotation 1ms: want 0 (never) or at least 1s"},
	} {
		_, err := parseFlags(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/internal/atomicfile"
	"github.com/xdpstack/xdpstack/userstack/psp/keyx"
)

// pspCertsCommand is `xdpstack psp certs`: a CA and node certificates
// for the PSP gateway's key exchange, for those who have none.
func pspCertsCommand() *cli.Command {
	return &cli.Command{
		Name:      "certs",
		Usage:     "make a CA and node certificates for the PSP key exchange's mutual TLS",
		ArgsUsage: "NAME=IP[,IP...]...",
		Description: "For each NAME=IP,IP... writes NAME.pem and NAME.key (chmod 600) into --dir, a\n" +
			"certificate that names the node's gRPC address and its virtual addresses as IP\n" +
			"addresses, signed by ca.pem and ca.key in --dir, which are made if absent. A\n" +
			"peer gets tunnels only for the virtual addresses its certificate names. Give each\n" +
			"node its NAME.pem, NAME.key and ca.pem (never ca.key): attach --psp-cert NAME.pem\n" +
			"--psp-key NAME.key --psp-ca ca.pem. Certificates made with openssl work as well.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Usage: "write into `DIR` (required; made if absent, chmod 700)"},
			&cli.IntFlag{Name: "days", Value: 825, Usage: "the certificates are valid for `N` days"},
		},
		Action: runPSPCerts,
	}
}

type certNode struct {
	name string
	ips  []netip.Addr
}

func runPSPCerts(c *cli.Context) error {
	if err := needFlags(c, "dir"); err != nil {
		return err
	}
	days := c.Int("days")
	if days < 1 || days > 3650 {
		return fmt.Errorf("psp certs: --days %d: want 1 to 3650", days)
	}
	if c.NArg() == 0 {
		return fmt.Errorf("psp certs: no node given (want NAME=IP[,IP...], e.g. gw1=192.0.2.1,10.9.0.1)")
	}
	dir := c.String("dir")
	var nodes []certNode
	for _, arg := range c.Args().Slice() {
		n, err := parseCertNode(arg)
		if err != nil {
			return err
		}
		for _, ext := range []string{".pem", ".key"} {
			if _, err := os.Lstat(filepath.Join(dir, n.name+ext)); err == nil {
				return fmt.Errorf("psp certs: %s exists (remove it to make a new one)", filepath.Join(dir, n.name+ext))
			}
		}
		nodes = append(nodes, n)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("psp certs: %w", err)
	}
	valid := time.Duration(days) * 24 * time.Hour
	ca, made, err := loadOrMakeCA(dir, valid)
	if err != nil {
		return err
	}
	if made {
		fmt.Fprintf(c.App.Writer, "made %s and %s (keep ca.key off the nodes)\n", filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key"))
	}
	for _, n := range nodes {
		p, err := keyx.NewNode(ca, n.name, n.ips, valid)
		if err != nil {
			return fmt.Errorf("psp certs: %w", err)
		}
		if err := writePEM(dir, n.name, p); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "made %s.pem and %s.key for %v\n", filepath.Join(dir, n.name), filepath.Join(dir, n.name), n.ips)
	}
	return nil
}

// parseCertNode reads NAME=IP[,IP...].
func parseCertNode(arg string) (certNode, error) {
	name, list, ok := strings.Cut(arg, "=")
	if !ok || name == "" || name == "ca" || strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != "" || strings.HasPrefix(name, ".") {
		return certNode{}, fmt.Errorf("psp certs: %q: want NAME=IP[,IP...] with a NAME of letters, digits and -_. other than ca", arg)
	}
	n := certNode{name: name}
	for _, s := range strings.Split(list, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return certNode{}, fmt.Errorf("psp certs: %s: %q is not an ip address", name, s)
		}
		n.ips = append(n.ips, a.Unmap())
	}
	return n, nil
}

// loadOrMakeCA reads ca.pem and ca.key in dir, or makes them.
func loadOrMakeCA(dir string, valid time.Duration) (keyx.PEM, bool, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	cert, cerr := os.ReadFile(certPath)
	key, kerr := os.ReadFile(keyPath)
	switch {
	case cerr == nil && kerr == nil:
		return keyx.PEM{Cert: cert, Key: key}, false, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		ca, err := keyx.NewCA("xdpstack psp ca", valid)
		if err == nil {
			err = writePEM(dir, "ca", ca)
		}
		if err != nil {
			return keyx.PEM{}, false, fmt.Errorf("psp certs: %w", err)
		}
		return ca, true, nil
	case cerr != nil && kerr != nil:
		return keyx.PEM{}, false, fmt.Errorf("psp certs: %w", cerr)
	}
	return keyx.PEM{}, false, fmt.Errorf("psp certs: %s and %s: one is missing (give both or neither)", certPath, keyPath)
}

// writePEM writes NAME.key (0600) then NAME.pem, each whole or not at all.
func writePEM(dir, name string, p keyx.PEM) error {
	for _, f := range []struct {
		ext  string
		data []byte
		perm os.FileMode
	}{{".key", p.Key, 0o600}, {".pem", p.Cert, 0o644}} {
		out, err := atomicfile.Create(filepath.Join(dir, name+f.ext), f.perm)
		if err != nil {
			return fmt.Errorf("psp certs: %w", err)
		}
		if _, err := out.Write(f.data); err != nil {
			out.Abort()
			return fmt.Errorf("psp certs: %w", err)
		}
		if err := out.Commit(); err != nil {
			return fmt.Errorf("psp certs: %w", err)
		}
	}
	return nil
}

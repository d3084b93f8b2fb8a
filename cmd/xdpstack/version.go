package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/xdpstack/xdpstack/bpf"
	"github.com/xdpstack/xdpstack/internal/buildinfo"
)

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit, Go version and build date, and the XDP program's hash",
		Description: "make build stamps the version (the release tag), commit and build date; a plain\n" +
			"go build leaves what the Go toolchain knows. The program's hash is SHA-256 of the\n" +
			"XDP program's instructions as compiled into this binary (its first 8 bytes): two\n" +
			"builds with the same hash carry the same program.",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Before: noArgs,
		Action: runVersion,
	}
}

// versionInfo is what `xdpstack version` prints.
type versionInfo struct {
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	Go          string `json:"go"`
	Built       string `json:"built"`
	ProgramHash string `json:"program_sha256"`
}

// readVersion is the running binary's build and the hash of the XDP
// program it carries: SHA-256 of its instructions as compiled, the
// first 8 bytes. (cilium/ebpf's ProgramSpec.Tag, like the kernel's
// tag, no longer matches the loaded program's since Linux 6.18.)
func readVersion() (versionInfo, error) {
	bi := buildinfo.Read()
	v := versionInfo{Version: bi.Version, Commit: bi.Revision, Go: bi.GoVersion, Built: bi.BuildDate}
	spec, err := bpf.LoadXdp()
	var specs bpf.XdpProgramSpecs
	if err == nil {
		err = spec.Assign(&specs)
	}
	var insns bytes.Buffer
	if err == nil {
		err = specs.XdpstackIngress.Instructions.Marshal(&insns, binary.LittleEndian)
	}
	if err != nil {
		return v, fmt.Errorf("version: read the XDP program: %w", err)
	}
	sum := sha256.Sum256(insns.Bytes())
	v.ProgramHash = hex.EncodeToString(sum[:8])
	return v, nil
}

func runVersion(c *cli.Context) error {
	v, err := readVersion()
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(c.App.Writer, v)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "version\t%s\ncommit\t%s\ngo\t%s\nbuilt\t%s\nprogram sha256\t%s\n", v.Version, v.Commit, v.Go, v.Built, v.ProgramHash)
	return w.Flush()
}

// versionLine is what --version prints after "xdpstack version".
func versionLine() string {
	bi := buildinfo.Read()
	return fmt.Sprintf("%s (commit %s, %s, built %s)", bi.Version, bi.Revision, bi.GoVersion, bi.BuildDate)
}

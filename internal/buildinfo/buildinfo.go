// Package buildinfo tells which build of xdpstack is running: what
// `make build` stamped into the binary with -ldflags -X (see the
// Makefile), else what the Go toolchain stamped.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Stamped by the linker: -X github.com/xdpstack/xdpstack/internal/buildinfo.version=v1.2.0
// and likewise revision and date. Empty ones leave the toolchain's.
var (
	version  string
	revision string
	date     string
)

// Info names a build.
type Info struct {
	Version   string // release tag, else the module version: "(devel)" for a local build
	Revision  string // VCS commit, with "+dirty" when the tree had changes
	GoVersion string
	BuildDate string // UTC, RFC 3339; "unknown" unless stamped
}

// Read returns the running binary's build info.
func Read() Info {
	info := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version(), BuildDate: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty {
			info.Revision += "+dirty"
		}
	}
	if version != "" {
		info.Version = version
	}
	if revision != "" {
		info.Revision = revision
	}
	if date != "" {
		info.BuildDate = date
	}
	return info
}

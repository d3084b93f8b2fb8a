// Package buildinfo tells which build of xdpstack is running, from what
// the Go toolchain stamped into the binary.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Info names a build.
type Info struct {
	Version   string // module version, "(devel)" for a local build
	Revision  string // VCS commit, with "+dirty" when the tree had changes
	GoVersion string
}

// Read returns the running binary's build info.
func Read() Info {
	info := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
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
	return info
}

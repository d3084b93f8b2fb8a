package buildinfo

import (
	"runtime"
	"testing"
)

func TestReadPrefersStamped(t *testing.T) {
	if got := Read(); got.Version == "" || got.Revision == "" || got.GoVersion != runtime.Version() || got.BuildDate != "unknown" {
		t.Errorf("Read() unstamped: got %+v", got)
	}
	version, revision, date = "v1.2.3", "abc123+dirty", "2026-12-06T20:00:00Z"
	t.Cleanup(func() { version, revision, date = "", "", "" })
	want := Info{Version: "v1.2.3", Revision: "abc123+dirty", GoVersion: runtime.Version(), BuildDate: "2026-12-06T20:00:00Z"}
	if got := Read(); got != want {
		t.Errorf("Read() stamped: got %+v, want %+v", got, want)
	}
}

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: version names the build and the program it carries, as
// text and as JSON, and --version says the same in one line.
func TestVersion(t *testing.T) {
	code, stdout, stderr := run(t, "version")
	want := regexp.MustCompile(`^version +\S+\ncommit +\S+\ngo +` + regexp.QuoteMeta(runtime.Version()) + `\nbuilt +\S+\nprogram sha256 +[0-9a-f]{16}\n$`)
	if code != 0 || stderr != "" || !want.MatchString(stdout) {
		t.Errorf("version: exit %d, stderr %q, stdout %q; want it to match %s", code, stderr, stdout, want)
	}
	code, stdout, _ = run(t, "version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(stdout), &v); code != 0 || err != nil || v.Go != runtime.Version() || len(v.ProgramHash) != 16 {
		t.Errorf("version --json: exit %d, %q (%v)", code, stdout, err)
	}
	code, stdout, _ = run(t, "--version")
	if code != 0 || !strings.HasPrefix(stdout, "xdpstack version "+v.Version+" (commit "+v.Commit+", "+v.Go+", built "+v.Built+")\n") {
		t.Errorf("--version: exit %d, %q; want the version of %+v", code, stdout, v)
	}
	if code, _, stderr := run(t, "version", "extra"); code != 1 || !strings.Contains(stderr, `version takes no arguments, got ["extra"]`) {
		t.Errorf("version extra: exit %d, %q", code, stderr)
	}
}

// TestMakeBuildStamps: make build stamps the version, commit and build
// date that version prints, through the Makefile's -ldflags.
func TestMakeBuildStamps(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	if err := exec.Command("git", "rev-parse", "HEAD").Run(); err != nil {
		t.Skipf("not a git checkout, no commit to stamp: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "xdpstack")
	cmd := exec.Command("make", "-C", "../..", "build", "BIN="+bin, "VERSION=v9.8.7-test")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1780000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version", "--json").Output()
	var v versionInfo
	if err == nil {
		err = json.Unmarshal(out, &v)
	}
	commit := regexp.MustCompile(`^[0-9a-f]{40}(\+dirty)?$`)
	if err != nil || v.Version != "v9.8.7-test" || !commit.MatchString(v.Commit) || v.Built != "2026-05-28T20:26:40Z" {
		t.Errorf("version of make build: %+v (%v); want v9.8.7-test, a commit and 2026-05-28T20:26:40Z", v, err)
	}
}

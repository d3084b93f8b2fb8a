package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ensureBPFFS makes sure that dir lies on a BPF filesystem, mounting one
// at the conventional place when nothing is mounted there yet.
func ensureBPFFS(dir string) error {
	if onBPFFS(dir) {
		return os.MkdirAll(dir, 0o700)
	}
	const mountPoint = "/sys/fs/bpf"
	if !isUnder(dir, mountPoint) {
		return fmt.Errorf("pin folder %s is not on a BPF filesystem (mount one: mount -t bpf bpf DIR)", dir)
	}
	if !onBPFFS(mountPoint) {
		if err := os.MkdirAll(mountPoint, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", mountPoint, err)
		}
		if err := unix.Mount("bpf", mountPoint, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("mount bpffs at %s: %w (mount it: mount -t bpf bpf %s)", mountPoint, err, mountPoint)
		}
	}
	return os.MkdirAll(dir, 0o700)
}

// onBPFFS tells whether the nearest existing folder at or above dir is on
// a BPF filesystem.
func onBPFFS(dir string) bool {
	for {
		var st unix.Statfs_t
		err := unix.Statfs(dir, &st)
		if err == nil {
			return st.Type == unix.BPF_FS_MAGIC
		}
		if !errors.Is(err, unix.ENOENT) || dir == filepath.Dir(dir) {
			return false
		}
		dir = filepath.Dir(dir)
	}
}

func isUnder(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !filepath.IsAbs(rel) && (len(rel) < 3 || rel[:3] != "../")
}

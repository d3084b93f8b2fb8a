// Package atomicfile writes a file whole or not at all: into a fresh
// temporary file beside it, renamed into place once complete. The
// temporary file is created with O_EXCL and O_NOFOLLOW under a random
// name, so a file or symlink that someone planted at a predictable
// name is never followed or written through, and with the mode asked
// for less the umask.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// File is a file being written; Commit puts it in place, Abort drops it.
type File struct {
	*os.File
	path string
	done bool
}

// Create starts writing path. It fails at once when path cannot become
// a file: an existing folder or other file that is not a regular one,
// or a folder where no file can be created (a missing one, /proc).
func Create(path string, perm os.FileMode) (*File, error) {
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		what := "not a regular file"
		if st.IsDir() {
			what = "a folder"
		}
		return nil, fmt.Errorf("%s is %s", path, what)
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	for range 10 {
		var r [8]byte
		rand.Read(r[:])
		tmp := filepath.Join(dir, "."+base+"."+hex.EncodeToString(r[:])+".tmp")
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create a file in %s: %w", dir, unwrapPath(err))
		}
		return &File{File: f, path: path}, nil
	}
	return nil, fmt.Errorf("create a file in %s: every name tried was taken", dir)
}

// Commit puts the written file in place of path.
func (f *File) Commit() error {
	f.done = true
	err := f.File.Close()
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", f.path, unwrapPath(err))
	}
	return nil
}

// Abort drops the file unless it was committed; path stays as it was.
func (f *File) Abort() {
	if !f.done {
		f.done = true
		f.File.Close()
		os.Remove(f.Name())
	}
}

// unwrapPath keeps the cause of a *PathError or *LinkError, whose paths
// the messages here already name.
func unwrapPath(err error) error {
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		return pe.Err
	case errors.As(err, &le):
		return le.Err
	}
	return err
}

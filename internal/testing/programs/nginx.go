package programs

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// NginxOptions is what an nginx serves.
type NginxOptions struct {
	// Listen is the argument of nginx's listen: "10.0.0.1:80", "80".
	Listen string
	// Workers is how many worker processes the master forks.
	Workers int
	// AccessLog logs every request with the pid of the worker that
	// served it (see WorkersServed); off, no request costs a write.
	AccessLog bool
}

// Nginx is an nginx master, daemonized as nginx is by default, and the
// workers it forked.
type Nginx struct {
	// Dir holds the configuration, pid file, logs and temp folders.
	Dir string
	// Root is the folder of the files served.
	Root string
	// Pid is the master's.
	Pid int
}

const nginxConf = `daemon on;
master_process on;
worker_processes %[2]d;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 1024; }
http {
	log_format workers '$pid $status $request';
	access_log %[4]s;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	sendfile on;
	keepalive_requests 1000000;
	server {
		listen %[3]s;
		root %[1]s/www;
	}
}
`

// StartNginx writes a configuration into dir and starts nginx with it
// through l. It returns once the master has forked off and written its
// pid file.
func StartNginx(ctx context.Context, l *Launcher, dir string, opts NginxOptions) (*Nginx, error) {
	n := &Nginx{Dir: dir, Root: filepath.Join(dir, "www")}
	for _, d := range []string{n.Root, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	accessLog := "off"
	if opts.AccessLog {
		accessLog = filepath.Join(dir, "access.log") + " workers"
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, dir, max(opts.Workers, 1), opts.Listen, accessLog), 0o644); err != nil {
		return nil, err
	}
	// A file, not a pipe: the daemonized master keeps what it inherited
	// open, and a pipe would not end until it exits.
	startLog := filepath.Join(dir, "start.log")
	out, err := os.Create(startLog)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := l.Command(ctx, "nginx", "-p", dir, "-c", conf)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nginx (%s): %w: %s%s", l.Mode(), err, readFile(startLog), readFile(filepath.Join(dir, "error.log")))
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(dir, "nginx.pid"))
		if err == nil {
			if n.Pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n.Pid > 0 {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("nginx (%s) wrote no pid file in 5s: %s%s", l.Mode(), readFile(startLog), readFile(filepath.Join(dir, "error.log")))
		}
	}
}

// WriteFile puts size random bytes into the served folder as name and
// returns their SHA-256.
func (n *Nginx) WriteFile(name string, size int) ([32]byte, error) {
	b := make([]byte, size)
	rand.Read(b)
	return sha256.Sum256(b), os.WriteFile(filepath.Join(n.Root, name), b, 0o644)
}

// ErrorLog is what nginx logged.
func (n *Nginx) ErrorLog() string { return readFile(filepath.Join(n.Dir, "error.log")) }

// WorkersServed counts the requests in the access log by the pid of
// the worker that served them.
func (n *Nginx) WorkersServed() (map[int]int, error) {
	f, err := os.Open(filepath.Join(n.Dir, "access.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	served := map[int]int{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		pid, _, _ := strings.Cut(s.Text(), " ")
		if p, err := strconv.Atoi(pid); err == nil {
			served[p]++
		}
	}
	return served, s.Err()
}

// Workers are the pids of the master's children.
func (n *Nginx) Workers() []int { return children(n.Pid) }

// Stop asks the master to end (SIGTERM), which ends its workers, and
// kills them all if it has not within stopWithin.
func (n *Nginx) Stop() error {
	workers := n.Workers()
	syscall.Kill(n.Pid, syscall.SIGTERM)
	for deadline := time.Now().Add(stopWithin); alive(n.Pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			for _, pid := range append(workers, n.Pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			return fmt.Errorf("nginx master %d still running %v after SIGTERM: %s", n.Pid, stopWithin, n.ErrorLog())
		}
	}
	return nil
}

// children are the pids of pid's child processes.
func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// alive says whether pid runs: it exists and is no zombie (an orphan's
// exit is reaped by init, whenever init gets to it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// readFile is a file's contents, or nothing: for error messages.
func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

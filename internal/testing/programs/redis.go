package programs

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
)

const redisConf = `bind %s
port %d
protected-mode no
daemonize no
save ""
appendonly no
dir %s
logfile ""
`

// StartRedis runs redis-server through l on addr:port, persisting
// nothing, its files in dir, and returns once it accepts connections.
func StartRedis(l *Launcher, dir, addr string, port int) (*Proc, error) {
	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, redisConf, addr, port, dir), 0o644); err != nil {
		return nil, err
	}
	p, err := Start(l.Command(context.Background(), "redis-server", conf))
	if err != nil {
		return nil, err
	}
	if err := p.WaitOutput("Ready to accept connections", 10*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("redis-server (%s): %w", l.Mode(), err)
	}
	return p, nil
}

// RedisBenchmark runs redis-benchmark from h against addr:port: requests
// of the tests (get,set), clients connections at once. It returns the
// requests per second of each test by its name in capitals (GET, SET).
func RedisBenchmark(ctx context.Context, h *hosts.Host, addr string, port int, tests string, requests, clients int) (map[string]float64, error) {
	// redis-benchmark waits forever for a server it cannot reach.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := []string{"-h", addr, "-p", strconv.Itoa(port), "-t", tests, "-n", strconv.Itoa(requests), "-c", strconv.Itoa(clients), "--csv"}
	out, err := h.Command(ctx, "redis-benchmark", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark %s: %w: %s", strings.Join(args, " "), err, out)
	}
	rps, err := parseRedisCSV(string(out))
	if err != nil {
		return nil, fmt.Errorf("redis-benchmark %s: %w:\n%s", strings.Join(args, " "), err, out)
	}
	for _, t := range strings.Split(tests, ",") {
		if rps[strings.ToUpper(t)] <= 0 {
			return nil, fmt.Errorf("redis-benchmark %s: no requests/s for %s:\n%s", strings.Join(args, " "), t, out)
		}
	}
	return rps, nil
}

// parseRedisCSV reads redis-benchmark --csv: a header, then one line per
// test with its requests per second ("test","rps",...).
func parseRedisCSV(out string) (map[string]float64, error) {
	records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return nil, err
	}
	rps := map[string]float64{}
	for _, r := range records {
		if len(r) < 2 || r[0] == "test" {
			continue
		}
		v, err := strconv.ParseFloat(r[1], 64)
		if err != nil {
			return nil, fmt.Errorf("test %s: requests/s %q: %w", r[0], r[1], err)
		}
		rps[r[0]] = v
	}
	return rps, nil
}

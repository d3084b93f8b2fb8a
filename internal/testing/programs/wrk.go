package programs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/xdpstack/xdpstack/internal/testing/hosts"
)

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
)

// Wrk is what a wrk run reports.
type Wrk struct {
	Requests  int
	PerSecond float64
}

// RunWrk runs wrk from h with args (the URL last). Socket errors or
// answers other than 2xx and 3xx are an error.
func RunWrk(ctx context.Context, h *hosts.Host, args ...string) (Wrk, error) {
	out, err := h.Command(ctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return Wrk{}, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, out)
	}
	w, err := parseWrk(string(out))
	if err != nil {
		return Wrk{}, fmt.Errorf("wrk %s: %w:\n%s", strings.Join(args, " "), err, out)
	}
	return w, nil
}

// parseWrk reads wrk's report: the requests made and their rate, an
// error if any failed.
func parseWrk(out string) (Wrk, error) {
	if strings.Contains(out, "Non-2xx") || strings.Contains(out, "Socket errors") {
		return Wrk{}, errors.New("requests failed")
	}
	n, rate := wrkRequests.FindStringSubmatch(out), wrkRate.FindStringSubmatch(out)
	if n == nil || rate == nil {
		return Wrk{}, errors.New("no request count or rate")
	}
	var w Wrk
	w.Requests, _ = strconv.Atoi(n[1])
	w.PerSecond, _ = strconv.ParseFloat(rate[1], 64)
	return w, nil
}

package programs

import (
	"context"
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
	s := string(out)
	if err != nil {
		return Wrk{}, fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, s)
	}
	if strings.Contains(s, "Non-2xx") || strings.Contains(s, "Socket errors") {
		return Wrk{}, fmt.Errorf("wrk %s saw errors:\n%s", strings.Join(args, " "), s)
	}
	n, rate := wrkRequests.FindStringSubmatch(s), wrkRate.FindStringSubmatch(s)
	if n == nil || rate == nil {
		return Wrk{}, fmt.Errorf("wrk %s: no request count or rate in:\n%s", strings.Join(args, " "), s)
	}
	var w Wrk
	w.Requests, _ = strconv.Atoi(n[1])
	w.PerSecond, _ = strconv.ParseFloat(rate[1], 64)
	return w, nil
}

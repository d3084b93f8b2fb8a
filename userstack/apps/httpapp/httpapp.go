// Package httpapp is the built-in HTTP application: a status page and its
// JSON with the running daemon's counters, rates, queues and sessions
// (xdpstack's answer to VPP's `show run` over HTTP), and static files from
// a folder. It is an http.Handler, so HTTP/1.1, HTTP/2 over TLS and HTTP/3
// over QUIC all serve it.
package httpapp

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/xdpstack/xdpstack/maps"
)

// Snapshot is the state the status page shows; the daemon builds it.
type Snapshot struct {
	Iface    string
	Mode     string
	Counters map[maps.Verdict]maps.Counter
	// Sections are further tables by name, such as "queues" or
	// "sessions": rows of named columns.
	Sections map[string][]map[string]any
}

// Source returns the current Snapshot.
type Source func() (Snapshot, error)

// counterJSON is one counter with its rate since the previous sample.
type counterJSON struct {
	Action           string  `json:"action"`
	Reason           string  `json:"reason"`
	Packets          uint64  `json:"packets"`
	Bytes            uint64  `json:"bytes"`
	PacketsPerSecond float64 `json:"packets_per_second"`
	BitsPerSecond    float64 `json:"bits_per_second"`
}

// status is what /status.json prints and /status renders.
type status struct {
	Time     time.Time                   `json:"time"`
	Iface    string                      `json:"iface"`
	Mode     string                      `json:"mode"`
	Counters []counterJSON               `json:"counters"`
	Sections map[string][]map[string]any `json:"sections"`
}

// minSampleGap keeps rates meaningful when requests come faster than
// counters move.
const minSampleGap = time.Second

type handler struct {
	source Source
	files  http.Handler

	mu       sync.Mutex
	prev     map[maps.Verdict]maps.Counter
	prevTime time.Time
}

// New returns the application's handler. With root set, files under it
// are served at /; the status is always at /status and /status.json.
func New(source Source, root string) (http.Handler, error) {
	h := &handler{source: source}
	if root != "" {
		st, err := os.Stat(root)
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("http app: --root %s is not a folder", root)
		}
		h.files = http.FileServer(http.Dir(root))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", h.page)
	mux.HandleFunc("GET /status.json", h.json)
	mux.HandleFunc("GET /", h.index)
	return mux, nil
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	if h.files != nil {
		h.files.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, "/status", http.StatusFound)
}

// read takes a snapshot and the rates since the last sample that is at
// least minSampleGap old.
func (h *handler) read() (status, error) {
	snap, err := h.source()
	if err != nil {
		return status{}, err
	}
	now := time.Now()
	h.mu.Lock()
	var rates map[maps.Verdict]maps.Rate
	if h.prev != nil {
		rates = maps.Rates(h.prev, snap.Counters, now.Sub(h.prevTime).Seconds())
	}
	if h.prev == nil || now.Sub(h.prevTime) >= minSampleGap {
		h.prev, h.prevTime = snap.Counters, now
	}
	h.mu.Unlock()

	st := status{Time: now.UTC(), Iface: snap.Iface, Mode: snap.Mode, Sections: snap.Sections}
	for v, c := range snap.Counters {
		st.Counters = append(st.Counters, counterJSON{v.Action.String(), v.Reason.String(), c.Packets, c.Bytes,
			rates[v].PacketsPerSecond, rates[v].BitsPerSecond})
	}
	slices.SortFunc(st.Counters, func(a, b counterJSON) int {
		return cmp.Or(cmp.Compare(a.Action, b.Action), cmp.Compare(a.Reason, b.Reason))
	})
	return st, nil
}

func (h *handler) json(w http.ResponseWriter, r *http.Request) {
	st, err := h.read()
	if err != nil {
		http.Error(w, "read status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	st, err := h.read()
	if err != nil {
		http.Error(w, "read status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTemplate.Execute(w, st)
}

// columns lists a section's column names in a stable order.
func columns(rows []map[string]any) []string {
	var cols []string
	for _, row := range rows {
		for k := range row {
			if !slices.Contains(cols, k) {
				cols = append(cols, k)
			}
		}
	}
	slices.Sort(cols)
	return cols
}

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{"columns": columns}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>xdpstack {{.Iface}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:.3em .8em;text-align:right}th{background:#eee}td:first-child,td:nth-child(2){text-align:left}</style>
</head><body>
<h1>xdpstack on {{.Iface}}</h1>
<p>XDP mode {{.Mode}} &middot; {{.Time.Format "2006-01-02 15:04:05 MST"}} &middot; <a href="/status.json">JSON</a></p>
<h2>XDP verdicts</h2>
<table><tr><th>action</th><th>reason</th><th>packets</th><th>bytes</th><th>packets/s</th><th>bits/s</th></tr>
{{range .Counters}}<tr><td>{{.Action}}</td><td>{{.Reason}}</td><td>{{.Packets}}</td><td>{{.Bytes}}</td><td>{{printf "%.0f" .PacketsPerSecond}}</td><td>{{printf "%.0f" .BitsPerSecond}}</td></tr>
{{end}}</table>
{{range $name, $rows := .Sections}}<h2>{{$name}}</h2>
{{with $cols := columns $rows}}<table><tr>{{range $cols}}<th>{{.}}</th>{{end}}</tr>
{{range $row := $rows}}<tr>{{range $c := $cols}}<td>{{index $row $c}}</td>{{end}}</tr>
{{end}}</table>{{else}}<p>none</p>{{end}}
{{end}}</body></html>
`))

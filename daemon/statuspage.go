package daemon

import (
	"encoding/json"
	"html/template"
	gomaps "maps"
	"net/http"
	"slices"
)

// StatusHandler serves the status at /status as a page that refreshes
// itself and at /status.json, for the HTTP apps.
func (d *Daemon) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status()
		if err != nil {
			http.Error(w, "read status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		if r.URL.Path == "/status.json" {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(st)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		statusPage.Execute(w, st)
	})
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"keys": func(m map[string]uint64) []string { return slices.Sorted(gomaps.Keys(m)) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<title>xdpstack {{.Iface}}</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:.3em .8em;text-align:right}th{background:#eee}td.l{text-align:left}</style>
</head><body>
<h1>xdpstack on {{.Iface}}</h1>
<p>XDP {{.XDP.Mode}} mode, program {{.XDP.ProgramID}}, pins in {{.XDP.PinDir}} &middot; {{.Time.Format "2006-01-02 15:04:05 MST"}} &middot; <a href="/status.json">JSON</a></p>
<h2>XDP verdicts</h2>
<table><tr><th>action</th><th>reason</th><th>packets</th><th>bytes</th><th>packets/s</th><th>bits/s</th></tr>
{{range .Verdicts}}<tr><td class="l">{{.Action}}</td><td class="l">{{.Reason}}</td><td>{{.Packets}}</td><td>{{.Bytes}}</td><td>{{printf "%.0f" .PacketsPerSecond}}</td><td>{{printf "%.0f" .BitsPerSecond}}</td></tr>
{{end}}</table>
{{with .Queues}}<h2>AF_XDP queues</h2>
<table><tr><th>queue</th><th>mode</th><th>rx packets</th><th>rx bytes</th><th>tx packets</th><th>tx bytes</th><th>kernel drops</th><th>tx failures</th><th>tx dropped</th><th>frames free</th><th>frames in kernel</th><th>frames lost</th></tr>
{{range .}}<tr><td>{{.Queue}}</td><td class="l">{{.AFXDPMode}}</td><td>{{.RxPackets}}</td><td>{{.RxBytes}}</td><td>{{.TxPackets}}</td><td>{{.TxBytes}}</td>
<td class="l">{{$d := .KernelDrops}}{{range keys $d}}{{.}} {{index $d .}}<br>{{end}}</td><td class="l">{{$f := .TxFailures}}{{range keys $f}}{{.}} {{index $f .}}<br>{{end}}</td>
<td>{{.TxDropped}}</td><td>{{.Frames.Free}}</td><td>{{.Frames.InKernel}}</td><td>{{.Frames.Lost}}</td></tr>
{{end}}</table>{{end}}
{{with .Netstack}}<h2>Netstack</h2>
<table><tr><th>counter</th><th>value</th></tr>
{{range .}}<tr><td class="l">{{.Name}}</td><td>{{.Value}}</td></tr>
{{end}}</table>{{end}}
{{with .Listeners}}<h2>Listeners</h2>
<table><tr><th>id</th><th>listener</th></tr>
{{range .}}<tr><td>{{.ID}}</td><td class="l">{{.Listener}}</td></tr>
{{end}}</table>{{end}}
{{with .Apps}}<h2>Apps</h2>
<table><tr><th>app</th><th>serving on</th><th>backend</th><th>counters</th></tr>
{{range .}}<tr><td class="l">{{.Spec}}</td><td class="l">{{.Addr}}</td><td class="l">{{.Backend}}</td><td class="l">{{$c := .Counters}}{{range keys $c}}{{.}} {{index $c .}}<br>{{end}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`))

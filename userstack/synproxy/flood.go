package synproxy

import (
	"sync"
	"sync/atomic"
	"time"
)

// The detector's settings: a flood is more than floodRate SYNs a second
// that open no connection, and is over once floodQuiet passes below the
// rate.
const (
	floodRate  = 10000
	floodTick  = 100 * time.Millisecond
	floodQuiet = time.Second
	// floodBurst SYNs more than the connections opened since the last
	// tick start a flood at once: until then the netstack queues every
	// SYN, a packet and a half-open connection each, and a fast link
	// brings hundreds of MiB of them in one tick.
	floodBurst = floodRate * uint64(floodTick) / uint64(time.Second)
	// sweepEvery ticks the table is swept (flows.go).
	sweepEvery = 10
)

// detector is what the proxy counts to tell a flood.
type detector struct {
	// syns counts the pure SYNs received; tickSYNs and tickOpened are
	// it and the connections the netstack had opened at the last tick,
	// tickAt when.
	syns, tickSYNs, tickOpened atomic.Uint64
	tickAt                     atomic.Int64
	// mu serializes the switches; startCookies and startOpened are the
	// counts at the flood's start, for the log of its end.
	mu                        sync.Mutex
	startCookies, startOpened uint64
}

// countSYN counts a pure SYN received and starts a flood once floodBurst
// of them since the last tick opened no connection.
func (p *Proxy) countSYN() {
	d := &p.detect
	n := d.syns.Add(1)
	if p.flood.Load() || n-d.tickSYNs.Load() <= floodBurst {
		return
	}
	opened := p.opts.Stats.TCP.PassiveConnectionOpenings.Value()
	if unanswered := n - d.tickSYNs.Load() - (opened - d.tickOpened.Load()); int64(unanswered) > int64(floodBurst) {
		since := time.Since(time.Unix(0, d.tickAt.Load()))
		p.startFlood(int64(float64(unanswered) / max(since, time.Millisecond).Seconds()))
	}
}

// run ticks the detector, keeps the cookie period and sweeps the table
// until the proxy closes.
func (p *Proxy) run() {
	d := &p.detect
	t := time.NewTicker(floodTick)
	defer t.Stop()
	opened := p.opts.Stats.TCP.PassiveConnectionOpenings
	cookies := p.opts.Stats.TCP.ListenOverflowSynCookieSent
	var (
		quietSince, lastCookie time.Time
		lastSent               uint64
	)
	for tick := 1; ; tick++ {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			p.period.Store(period(now))
			syns, open := d.syns.Load(), opened.Value()
			rate := (int64(syns-d.tickSYNs.Load()) - int64(open-d.tickOpened.Load())) * int64(time.Second/floodTick)
			d.tickSYNs.Store(syns)
			d.tickOpened.Store(open)
			d.tickAt.Store(now.UnixNano())
			switch flooded := p.flood.Load(); {
			case rate > floodRate:
				quietSince = time.Time{}
				p.startFlood(rate)
			case flooded && quietSince.IsZero():
				quietSince = now
			case flooded && now.Sub(quietSince) >= floodQuiet:
				p.endFlood()
			}
			if sent := cookies.Value(); sent != lastSent {
				lastSent, lastCookie = sent, now
			}
			p.checking.Store(p.flood.Load() || !lastCookie.IsZero() && now.Sub(lastCookie) < 2*cookiePeriod)
			if tick%sweepEvery == 0 {
				p.sweep()
			}
		}
	}
}

// startFlood has the proxy answer every SYN for a listener, unless it
// does already, and says so.
func (p *Proxy) startFlood(rate int64) {
	d := &p.detect
	d.mu.Lock()
	defer d.mu.Unlock()
	if p.flood.Load() {
		return
	}
	d.startCookies, d.startOpened = p.opts.Stats.TCP.ListenOverflowSynCookieSent.Value(), p.opened.Load()
	p.setFlood(true)
	p.opts.Log.Warn("SYN flood: the SYN proxy answers every SYN with a cookie; connections opened now have no window scaling, SACK or timestamps", "unanswered_syns_per_second", rate)
}

// endFlood leaves the SYNs to the netstack again, and says so.
func (p *Proxy) endFlood() {
	d := &p.detect
	d.mu.Lock()
	defer d.mu.Unlock()
	p.opts.Log.Info("SYN flood over: the netstack answers SYNs again", "cookies_sent", p.opts.Stats.TCP.ListenOverflowSynCookieSent.Value()-d.startCookies, "connections_opened", p.opened.Load()-d.startOpened)
	p.setFlood(false)
}

// setFlood switches answering SYNs on or off; cookies are checked from
// the first one on.
func (p *Proxy) setFlood(on bool) {
	if on {
		p.checking.Store(true)
	}
	p.flood.Store(on)
}

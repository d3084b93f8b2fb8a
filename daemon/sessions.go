package daemon

import (
	"fmt"
	"slices"
	"strings"

	"github.com/xdpstack/xdpstack/userstack"
)

// SessionsQuery chooses the sessions to list and how much to say of
// each; a zero field chooses all.
type SessionsQuery struct {
	Namespace string `json:"namespace,omitempty"`
	// State is one of VPP's session state names (userstack.SessionStates).
	State string `json:"state,omitempty"`
	// Proto is tcp or udp.
	Proto string `json:"proto,omitempty"`
	// Verbose is 0, 1 (namespace and app too) or 2 (and the TCP
	// variables).
	Verbose int `json:"verbose,omitempty"`
}

// MaxSessionsVerbose is the most a sessions query may ask for.
const MaxSessionsVerbose = 2

// Check says what is wrong with q, in one line.
func (q SessionsQuery) Check() error {
	if q.State != "" && !slices.Contains(userstack.SessionStates, userstack.SessionState(q.State)) {
		names := make([]string, len(userstack.SessionStates))
		for i, s := range userstack.SessionStates {
			names[i] = string(s)
		}
		return fmt.Errorf("sessions: unknown state %q (want one of %s)", q.State, strings.Join(names, ", "))
	}
	if q.Proto != "" && q.Proto != "tcp" && q.Proto != "udp" {
		return fmt.Errorf("sessions: unknown proto %q (want tcp or udp)", q.Proto)
	}
	if q.Verbose < 0 || q.Verbose > MaxSessionsVerbose {
		return fmt.Errorf("sessions: verbose %d (want 0, 1 or 2)", q.Verbose)
	}
	return nil
}

// SessionsReply is the sessions view: the userstack's listeners and
// connections that the query chose, and a total per queue.
type SessionsReply struct {
	Iface   string `json:"iface"`
	Verbose int    `json:"verbose"`
	// Userstack is false when the daemon runs none: nothing to list.
	Userstack bool                `json:"userstack"`
	Sessions  []userstack.Session `json:"sessions"`
	Queues    []QueueSessions     `json:"queues"`
}

// QueueSessions totals a queue's chosen sessions.
type QueueSessions struct {
	Queue    int `json:"queue"`
	Sessions int `json:"sessions"`
	RxFifo   int `json:"rx_fifo"`
	TxFifo   int `json:"tx_fifo"`
}

// Sessions lists the userstack's sessions that q chooses.
func (d *Daemon) Sessions(q SessionsQuery) (SessionsReply, error) {
	if err := q.Check(); err != nil {
		return SessionsReply{}, err
	}
	reply := SessionsReply{Iface: d.Iface.Name, Verbose: q.Verbose, Sessions: []userstack.Session{}, Queues: []QueueSessions{}}
	stack := d.stack()
	if stack == nil {
		return reply, nil
	}
	reply.Userstack = true
	reply.Sessions = stack.ListSessions(userstack.SessionFilter{
		Namespace: q.Namespace,
		State:     userstack.SessionState(q.State),
		Protocol:  q.Proto,
		TCPVars:   q.Verbose >= 2,
	})
	reply.Queues = queueTotals(len(stack.Sockets()), reply.Sessions)
	return reply, nil
}

// queueTotals sums sessions by queue, for every one of n queues.
func queueTotals(n int, sessions []userstack.Session) []QueueSessions {
	totals := make([]QueueSessions, n)
	for i := range totals {
		totals[i].Queue = i
	}
	for _, s := range sessions {
		if s.Queue < 0 || s.Queue >= n {
			continue
		}
		t := &totals[s.Queue]
		t.Sessions++
		t.RxFifo += s.RxFifo
		t.TxFifo += s.TxFifo
	}
	return totals
}

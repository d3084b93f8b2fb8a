package reservedports

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/xdpstack/xdpstack/maps"
)

// portSet is a set of TCP/UDP ports, one bit each: union, difference
// and intersection are then word by word.
type portSet [65536 / 64]uint64

func rangeSet(r maps.PortRange) portSet {
	var s portSet
	for p := int(r.Min); r != (maps.PortRange{}) && p <= int(r.Max); p++ {
		s[p/64] |= 1 << (p % 64)
	}
	return s
}

func (s portSet) union(o portSet) portSet {
	for i := range s {
		s[i] |= o[i]
	}
	return s
}

func (s portSet) minus(o portSet) portSet {
	for i := range s {
		s[i] &^= o[i]
	}
	return s
}

func (s portSet) intersect(o portSet) portSet {
	for i := range s {
		s[i] &= o[i]
	}
	return s
}

func (s portSet) has(p int) bool { return s[p/64]&(1<<(p%64)) != 0 }

// parsePorts reads the kernel's format: ports and MIN-MAX ranges
// separated by commas, "" for none.
func parsePorts(text string) (portSet, error) {
	var s portSet
	text = strings.TrimSpace(text)
	if text == "" {
		return s, nil
	}
	for _, part := range strings.Split(text, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		if !isRange {
			hi = lo
		}
		min, err1 := strconv.ParseUint(lo, 10, 16)
		max, err2 := strconv.ParseUint(hi, 10, 16)
		if err1 != nil || err2 != nil || min > max {
			return s, fmt.Errorf("reserved ports %q: %q is not a port or MIN-MAX range", text, part)
		}
		s = s.union(rangeSet(maps.PortRange{Min: uint16(min), Max: uint16(max)}))
	}
	return s, nil
}

// String writes the kernel's format, as it prints it: single ports
// alone, runs as MIN-MAX.
func (s portSet) String() string {
	var parts []string
	for p := 0; p < 65536; p++ {
		if !s.has(p) {
			continue
		}
		end := p
		for end+1 < 65536 && s.has(end+1) {
			end++
		}
		if end == p {
			parts = append(parts, strconv.Itoa(p))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", p, end))
		}
		p = end
	}
	return strings.Join(parts, ",")
}

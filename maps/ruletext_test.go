package maps

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestRuleText(t *testing.T) {
	for _, tc := range []struct {
		text  RuleText
		want  string // the rule's String, or the error
		field string // of the error
	}{
		{RuleText{Action: "deny"}, "--proto any --local any --remote any --action deny", ""},
		{RuleText{Proto: "tcp", Local: ":22", Remote: "10.1.0.0/16", Action: "allow", Tag: "ssh"}, "--proto tcp --local 0.0.0.0/0:22 --remote 10.1.0.0/16 --action allow --tag ssh", ""},
		{RuleText{Proto: "udp", Local: "[2001:db8::/32]:53", Action: "pass"}, "--proto udp --local [2001:db8::/32]:53 --remote ::/0 --action pass", ""},
		{RuleText{Proto: "icmp", Action: "deny"}, `proto: protocol "icmp": want tcp, udp or any`, "proto"},
		{RuleText{Local: "10.0.0.0/33", Action: "deny"}, `local: "10.0.0.0/33": not an address or prefix`, "local"},
		{RuleText{Remote: "1.2.3.4:70000", Action: "deny"}, `remote: "1.2.3.4:70000": port "70000" is not 0 to 65535`, "remote"},
		{RuleText{Local: "10.0.0.1"}, "action: missing (want allow, deny or pass)", "action"},
		{RuleText{Action: "reject"}, `action: action "reject": want allow, deny or pass`, "action"},
		{RuleText{Action: "deny", Tag: "a b"}, `tag: tag "a b": want letters, digits and -_.:/ only`, "tag"},
		{RuleText{Local: "10.0.0.1", Remote: "2001:db8::1", Action: "deny"}, "prefixes of different families", ""},
	} {
		r, err := tc.text.Rule()
		if err != nil {
			var fe *RuleFieldError
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.HasSuffix(err.Error(), tc.want) || errors.As(err, &fe) != (tc.field != "") || fe != nil && fe.Field != tc.field {
				t.Errorf("%+v.Rule(): got %v, want %q (field %q)", tc.text, err, tc.want, tc.field)
			}
			continue
		}
		if r.String() != tc.want || tc.field != "" {
			t.Errorf("%+v.Rule(): got %s, want %s", tc.text, r, tc.want)
		}
		// What Text writes, Rule reads back.
		if back, err := r.Text().Rule(); err != nil || back != r {
			t.Errorf("round trip of %s through %+v: got %v, %v", r, r.Text(), back, err)
		}
	}
}

func TestRuleSelector(t *testing.T) {
	m := RuleMatch{Protocol: TCP, LocalPort: 22}
	a := Rule{ID: 1, RuleMatch: m, Action: RuleDeny, Tag: "ssh"}
	b := Rule{ID: 2, RuleMatch: RuleMatch{Remote: netip.MustParsePrefix("10.0.0.0/8")}, Action: RuleDeny, Tag: "ssh"}
	c := Rule{ID: 3, Action: RuleAllow}
	for _, tc := range []struct {
		s    RuleSelector
		want []bool
	}{
		{RuleSelector{Tag: "ssh"}, []bool{true, true, false}},
		{RuleSelector{Match: m}, []bool{true, false, false}},
		{RuleSelector{}, []bool{false, false, true}}, // the match of any packet
	} {
		for i, r := range []Rule{a, b, c} {
			if got := tc.s.Selects(r); got != tc.want[i] {
				t.Errorf("%s selects rule %d: %v, want %v", tc.s, r.ID, got, tc.want[i])
			}
		}
	}
}

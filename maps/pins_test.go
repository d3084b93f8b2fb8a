package maps

import "testing"

func TestCheckIfaceName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"veth-a.100", true},
		{"fifteen-bytes-x", true},
		{"tc", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/b", false},
		{"eth0:1", false},
		{"eth 0", false},
		{"eth0\n", false},
		{"sixteen-bytes-xx", false},
	} {
		if err := CheckIfaceName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckIfaceName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

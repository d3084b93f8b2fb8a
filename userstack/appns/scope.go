package appns

import "fmt"

// Scope says which sessions an application takes part in, as VPP's
// application scopes do: global ones, over the network; local ones,
// joined in memory to another application of the same namespace
// (cut-through); or both.
type Scope uint8

const (
	// ScopeGlobal is the default: every session goes over the network.
	ScopeGlobal Scope = iota
	// ScopeLocal listens for and connects to the namespace's other
	// applications only.
	ScopeLocal
	// ScopeBoth listens both ways, and connects to a local listener
	// where there is one, else over the network.
	ScopeBoth
)

var scopeNames = [...]string{ScopeGlobal: "global", ScopeLocal: "local", ScopeBoth: "both"}

func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// ParseScope reads global, local or both.
func ParseScope(s string) (Scope, error) {
	for i, name := range scopeNames {
		if s == name {
			return Scope(i), nil
		}
	}
	return 0, fmt.Errorf("scope %q: want global, local or both", s)
}

// Local tells whether the scope has local sessions.
func (s Scope) Local() bool { return s == ScopeLocal || s == ScopeBoth }

// Global tells whether the scope has sessions over the network.
func (s Scope) Global() bool { return s == ScopeGlobal || s == ScopeBoth }

// Package yamlnode says what a YAML node holds, for the errors of the
// config file and of the PSP gateway's config, which read nodes to know
// each value's line.
package yamlnode

import (
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Describe names what n holds: "a mapping", "a list", "an alias",
// "nothing" for null, or the scalar quoted.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

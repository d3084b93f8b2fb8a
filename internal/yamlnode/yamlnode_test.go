package yamlnode

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestDescribe(t *testing.T) {
	for doc, want := range map[string]string{
		"{a: 1}": "a mapping", "[1]": "a list", "~": "nothing", `""`: `""`, "x": `"x"`,
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
			t.Fatal(err)
		}
		if got := Describe(n.Content[0]); got != want {
			t.Errorf("Describe(%s) = %s, want %s", doc, got, want)
		}
	}
}

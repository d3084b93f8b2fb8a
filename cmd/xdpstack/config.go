package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	gomaps "maps"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"

	"github.com/xdpstack/xdpstack/internal/yamlnode"
	"github.com/xdpstack/xdpstack/maps"
	"github.com/xdpstack/xdpstack/userstack/psp/pspconfig"
)

// A config file (attach --config FILE) holds what attach's flags hold,
// under the flags' names (apps: the --app specs, as a list), plus the
// sections that a reload applies while the daemon runs. Its values go
// through the same checks as the flags' (settings).

// kinds of config values.
const (
	kindString = iota
	kindBool
	kindInt
	kindApps
	kindNamespaces
	kindRules
	kindPSP
)

// configKey is one key of the config file.
type configKey struct {
	kind int
	// flag is the flag the key stands for; nil for a section of its own.
	flag cli.Flag
}

// notInConfig are attach's flags with no key: the one naming the file.
var notInConfig = []string{"config"}

// configKeys lists the config file's keys: one per flag of attach and
// per log flag, so that every flag has one, and the later sections.
func configKeys() map[string]configKey {
	keys := map[string]configKey{"namespaces": {kind: kindNamespaces}, "rules": {kind: kindRules}, "psp": {kind: kindPSP}}
	for _, f := range append(attachCommand().Flags, logFlags...) {
		name := f.Names()[0]
		if slices.Contains(notInConfig, name) {
			continue
		}
		k := configKey{flag: f}
		name = keyOfFlag(name)
		switch f.(type) {
		case *cli.StringFlag:
			k.kind = kindString
		case *cli.BoolFlag:
			k.kind = kindBool
		case *cli.IntFlag:
			k.kind = kindInt
		case *cli.StringSliceFlag:
			k.kind = kindApps
		default:
			panic(fmt.Sprintf("flag --%s: no config key for %T", name, f))
		}
		keys[name] = k
	}
	return keys
}

// keyOfFlag is the config key of an attach flag, and flagOfKey the
// flag of a key: the same name, but apps for the repeated --app.
func keyOfFlag(flag string) string {
	if flag == "app" {
		return "apps"
	}
	return flag
}

func flagOfKey(key string) string {
	if key == "apps" {
		return "app"
	}
	return key
}

// configFile is a config file read and checked for its form: known
// keys, values of the right kinds.
type configFile struct {
	path   string
	values map[string]configValue
}

// configValue is one key's value and where it was written.
type configValue struct {
	line int
	// value is a string, bool or int, []configApp for apps,
	// []configNamespace for namespaces, []configRule for rules,
	// *pspconfig.Config for psp.
	value any
}

// configApp is one app of the apps list: a spec as --app takes it, or
// its parts.
type configApp struct {
	line int
	spec string
	name string
	uri  string
	opts map[string]string
}

// readConfig reads a config file.
func readConfig(path string) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parseConfig(path, b)
}

// configError is an error at a line of a config file.
func (f *configFile) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("config %s line %d: %s", f.path, line, fmt.Sprintf(format, args...))
}

func parseConfig(path string, b []byte) (*configFile, error) {
	f := &configFile{path: path, values: map[string]configValue{}}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return f, nil // empty: all defaults
	} else if err != nil {
		// "yaml: line 3: did not find expected key"
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if !strings.HasPrefix(msg, "line ") {
			msg = ": " + msg
		}
		return nil, fmt.Errorf("config %s %s", path, msg)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, f.errorf(more.Line, "a second document (one document only)")
	}
	root := doc.Content[0]
	if root.Tag == "!!null" {
		return f, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, f.errorf(root.Line, "want keys and values (key: value), got %s", yamlnode.Describe(root))
	}
	keys := configKeys()
	for i := 0; i < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key := k.Value
		spec, ok := keys[key]
		switch {
		case k.Kind != yaml.ScalarNode:
			return nil, f.errorf(k.Line, "a key must be a name, got %s", yamlnode.Describe(k))
		case !ok:
			return nil, f.errorf(k.Line, "unknown key %q (known: %s)", key, strings.Join(slices.Sorted(gomaps.Keys(keys)), ", "))
		}
		if prev, dup := f.values[key]; dup {
			return nil, f.errorf(k.Line, "%s given twice (first on line %d)", key, prev.line)
		}
		value, err := f.decode(k, spec.kind, v)
		if err != nil {
			return nil, err
		}
		f.values[key] = configValue{line: v.Line, value: value}
	}
	return f, nil
}

// decode checks a value against its key's kind.
func (f *configFile) decode(k *yaml.Node, kind int, v *yaml.Node) (any, error) {
	key := k.Value
	bad := func(want string) error {
		return f.errorf(v.Line, "%s: want %s, got %s", key, want, yamlnode.Describe(v))
	}
	switch kind {
	case kindString:
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return nil, bad(`a value (write "" for none)`)
		}
		return v.Value, nil
	case kindBool:
		var b bool
		if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
			return nil, bad("true or false")
		}
		return b, nil
	case kindInt:
		var n int
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil {
			return nil, bad("a whole number")
		}
		return n, nil
	case kindApps:
		return f.decodeApps(v)
	case kindNamespaces:
		return f.decodeNamespaces(v)
	case kindRules:
		return f.decodeRules("rules", v)
	case kindPSP:
		return f.decodePSP(v)
	}
	panic("unknown config kind")
}

// appKeys are the keys of an app given by its parts.
var appKeys = []string{"name", "uri", "options"}

func (f *configFile) decodeApps(v *yaml.Node) ([]configApp, error) {
	if v.Tag == "!!null" {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, f.errorf(v.Line, "apps: want a list, got %s", yamlnode.Describe(v))
	}
	var list []configApp
	for _, item := range v.Content {
		app := configApp{line: item.Line}
		switch item.Kind {
		case yaml.ScalarNode:
			app.spec = item.Value
		case yaml.MappingNode:
			for i := 0; i < len(item.Content); i += 2 {
				k, val := item.Content[i], item.Content[i+1]
				var err error
				switch k.Value {
				case "name":
					err = f.scalar(val, "apps: name", &app.name)
				case "uri":
					err = f.scalar(val, "apps: uri", &app.uri)
				case "options":
					app.opts, err = f.options(val)
				default:
					err = f.errorf(k.Line, "apps: unknown key %q (known: %s)", k.Value, strings.Join(appKeys, ", "))
				}
				if err != nil {
					return nil, err
				}
			}
			if app.name == "" || app.uri == "" {
				return nil, f.errorf(item.Line, "apps: an app needs a name and a uri (e.g. name: echo, uri: tcp://:7)")
			}
		default:
			return nil, f.errorf(item.Line, "apps: want NAME=URI[,opt=val] or name, uri and options, got %s", yamlnode.Describe(item))
		}
		list = append(list, app)
	}
	return list, nil
}

func (f *configFile) scalar(v *yaml.Node, what string, dst *string) error {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" || v.Value == "" {
		return f.errorf(v.Line, "%s: want a value, got %s", what, yamlnode.Describe(v))
	}
	*dst = v.Value
	return nil
}

func (f *configFile) options(v *yaml.Node) (map[string]string, error) {
	if v.Kind != yaml.MappingNode {
		return nil, f.errorf(v.Line, "apps: options: want opt: val pairs, got %s", yamlnode.Describe(v))
	}
	opts := map[string]string{}
	for i := 0; i < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		var s string
		if err := f.scalar(val, "apps: options: "+k.Value, &s); err != nil {
			return nil, err
		}
		if _, dup := opts[k.Value]; dup {
			return nil, f.errorf(k.Line, "apps: option %s given twice", k.Value)
		}
		opts[k.Value] = s
	}
	return opts, nil
}

// configRule is one rule of a rules list, as RuleText takes it, with
// the line of each field for errors.
type configRule struct {
	line  int
	text  maps.RuleText
	lines map[string]int
}

// ruleKeys are the keys of a rule: the rules command's flags.
var ruleKeys = []string{"proto", "local", "remote", "action", "tag"}

// decodeRules reads a list of rules, the global one or a namespace's
// (what names it in errors).
func (f *configFile) decodeRules(what string, v *yaml.Node) ([]configRule, error) {
	items, err := f.list(what, v)
	if err != nil {
		return nil, err
	}
	var list []configRule
	for _, item := range items {
		r := configRule{line: item.Line, lines: map[string]int{}}
		fields := map[string]*string{"proto": &r.text.Proto, "local": &r.text.Local, "remote": &r.text.Remote, "action": &r.text.Action, "tag": &r.text.Tag}
		err := f.mapping(what, "a rule", ruleKeys, item, func(k, val *yaml.Node) error {
			r.lines[k.Value] = val.Line
			return f.scalar(val, what+": "+k.Value, fields[k.Value])
		})
		if err != nil {
			return nil, err
		}
		list = append(list, r)
	}
	return list, nil
}

// configNamespace is one namespace of the namespaces list.
type configNamespace struct {
	line       int
	name       string
	secret     string
	secretFile string
	// fileLine is the line of secret-file, for its errors.
	fileLine int
	addrs    []configAddr
	rules    []configRule
}

// configAddr is an address of a namespace, with its line.
type configAddr struct {
	line int
	text string
}

// namespaceKeys are the keys of a namespace.
var namespaceKeys = []string{"name", "secret", "secret-file", "addrs", "rules"}

func (f *configFile) decodeNamespaces(v *yaml.Node) ([]configNamespace, error) {
	items, err := f.list("namespaces", v)
	if err != nil {
		return nil, err
	}
	var list []configNamespace
	for _, item := range items {
		ns := configNamespace{line: item.Line}
		var rules *yaml.Node
		err := f.mapping("namespaces", "a namespace", namespaceKeys, item, func(k, val *yaml.Node) error {
			switch k.Value {
			case "name":
				return f.scalar(val, "namespaces: name", &ns.name)
			case "secret":
				return f.scalar(val, "namespaces: secret", &ns.secret)
			case "secret-file":
				ns.fileLine = val.Line
				return f.scalar(val, "namespaces: secret-file", &ns.secretFile)
			case "addrs":
				addrs, err := f.list("namespaces: addrs", val)
				if err != nil {
					return err
				}
				for _, a := range addrs {
					var text string
					if err := f.scalar(a, "namespaces: addrs", &text); err != nil {
						return err
					}
					ns.addrs = append(ns.addrs, configAddr{a.Line, text})
				}
				return nil
			}
			rules = val
			return nil
		})
		if err != nil {
			return nil, err
		}
		what := "namespaces: " + ns.name
		switch {
		case ns.name == "":
			return nil, f.errorf(item.Line, "namespaces: a namespace needs a name (e.g. name: blue, secret-file: FILE)")
		case ns.secret != "" && ns.secretFile != "":
			return nil, f.errorf(item.Line, "%s: secret and secret-file both given (give one)", what)
		}
		if rules != nil {
			if ns.rules, err = f.decodeRules(what+": rules", rules); err != nil {
				return nil, err
			}
		}
		list = append(list, ns)
	}
	return list, nil
}

// decodePSP reads the psp section: the tree of the PSP gateway's JSON
// config file (config: local-grpc-address, peers), in YAML.
func (f *configFile) decodePSP(v *yaml.Node) (*pspconfig.Config, error) {
	c, err := pspconfig.FromYAML(v)
	var e *pspconfig.Error
	if errors.As(err, &e) {
		line := e.Line
		if line == 0 {
			line = v.Line
		}
		return nil, f.errorf(line, "psp: %s", (&pspconfig.Error{Path: e.Path, Msg: e.Msg}).Error())
	}
	return c, err
}

// list reads a list; nothing is an empty one.
func (f *configFile) list(what string, v *yaml.Node) ([]*yaml.Node, error) {
	switch {
	case v.Tag == "!!null":
		return nil, nil
	case v.Kind != yaml.SequenceNode:
		return nil, f.errorf(v.Line, "%s: want a list, got %s", what, yamlnode.Describe(v))
	}
	return v.Content, nil
}

// mapping reads an item of a list that is a mapping of known keys, each
// given once, and hands each key and value to field.
func (f *configFile) mapping(what, item string, known []string, v *yaml.Node, field func(k, val *yaml.Node) error) error {
	if v.Kind != yaml.MappingNode {
		return f.errorf(v.Line, "%s: want %s (%s), got %s", what, item, strings.Join(known, ", "), yamlnode.Describe(v))
	}
	seen := map[string]int{}
	for i := 0; i < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		switch line, dup := seen[k.Value]; {
		case !slices.Contains(known, k.Value):
			return f.errorf(k.Line, "%s: unknown key %q (known: %s)", what, k.Value, strings.Join(known, ", "))
		case dup:
			return f.errorf(k.Line, "%s: %s given twice (first on line %d)", what, k.Value, line)
		}
		seen[k.Value] = k.Line
		if err := field(k, val); err != nil {
			return err
		}
	}
	return nil
}

package kubernetes

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// root is the repository's root, the Containerfile's build context.
const root = "../.."

// decode reads a manifest strictly: an unknown or repeated field fails,
// as kubectl apply --validate=strict fails it.
func decode(t *testing.T, file string, obj any, apiVersion, kind string) {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &meta); err != nil || meta.APIVersion != apiVersion || meta.Kind != kind {
		t.Fatalf("%s: %s %s (%v), want %s %s", file, meta.APIVersion, meta.Kind, err, apiVersion, kind)
	}
}

type manifests struct {
	ns corev1.Namespace
	cm corev1.ConfigMap
	ds appsv1.DaemonSet
}

func readManifests(t *testing.T) manifests {
	t.Helper()
	var m manifests
	decode(t, "namespace.yaml", &m.ns, "v1", "Namespace")
	decode(t, "configmap.yaml", &m.cm, "v1", "ConfigMap")
	decode(t, "daemonset.yaml", &m.ds, "apps/v1", "DaemonSet")
	if m.cm.Namespace != m.ns.Name || m.ds.Namespace != m.ns.Name {
		t.Errorf("namespaces: ConfigMap in %q, DaemonSet in %q, want both in %q", m.cm.Namespace, m.ds.Namespace, m.ns.Name)
	}
	return m
}

// TestStrictDecoding checks that a field the API does not know fails
// the decoding, so that the manifests' passing means something.
func TestStrictDecoding(t *testing.T) {
	var ds appsv1.DaemonSet
	err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: DaemonSet\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n"), &ds)
	if err == nil || !strings.Contains(err.Error(), `unknown field "hostNetwrok"`) {
		t.Errorf("a misspelt field: got %v", err)
	}
}

func TestDaemonSet(t *testing.T) {
	m := readManifests(t)
	ds := m.ds
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("hostNetwork is off: the daemon must attach to the node's interface")
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not select the pods (labels %v)", k, v, ds.Spec.Template.Labels)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if want := containerfileBinary(t); len(c.Command) != 1 || c.Command[0] != want {
		t.Errorf("command %q, want the image's %s", c.Command, want)
	}

	t.Run("mounts", func(t *testing.T) {
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
		}
		mounts := map[string]corev1.Volume{}
		for _, vm := range c.VolumeMounts {
			v, ok := volumes[vm.Name]
			if !ok {
				t.Errorf("mount %s: no volume %q", vm.MountPath, vm.Name)
			}
			mounts[vm.MountPath] = v
		}
		for _, host := range []string{"/sys/fs/bpf", "/run/xdpstack"} {
			v := mounts[host]
			if v.HostPath == nil || v.HostPath.Path != host {
				t.Errorf("%s: mounted from %+v, want the node's %s", host, v.VolumeSource, host)
			}
		}
		if v := mounts["/etc/xdpstack"]; v.ConfigMap == nil || v.ConfigMap.Name != m.cm.Name {
			t.Errorf("/etc/xdpstack: mounted from %+v, want the ConfigMap %s", v.VolumeSource, m.cm.Name)
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil {
			t.Fatal("no securityContext with capabilities")
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Error("privileged: want the capabilities alone")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation is not false")
		}
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("drop %v, want ALL", sc.Capabilities.Drop)
		}
		// The set the systemd unit found attach uses (deploy/systemd).
		want := []corev1.Capability{"BPF", "IPC_LOCK", "NET_ADMIN", "NET_RAW", "PERFMON"}
		if got := slices.Sorted(slices.Values(sc.Capabilities.Add)); !slices.Equal(got, want) {
			t.Errorf("add %v, want %v", got, want)
		}
	})

	t.Run("config", func(t *testing.T) {
		iface := ""
		for _, e := range c.Env {
			if e.Name == "XDPSTACK_IFACE" && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil &&
				e.ValueFrom.ConfigMapKeyRef.Name == m.cm.Name {
				iface = m.cm.Data[e.ValueFrom.ConfigMapKeyRef.Key]
			}
		}
		if iface == "" {
			t.Errorf("env %+v: want XDPSTACK_IFACE from a key of the ConfigMap %s (data %v)", c.Env, m.cm.Name, m.cm.Data)
		}
		configFile := configPath(t, m)
		want := []string{"attach", "$(XDPSTACK_IFACE)", "--config", configFile}
		if !slices.Equal(c.Args, want) {
			t.Errorf("args %q, want %q", c.Args, want)
		}
	})

	t.Run("readiness probe", func(t *testing.T) {
		p := c.ReadinessProbe
		if p == nil || p.Exec == nil {
			t.Fatal("no exec readiness probe")
		}
		// Run it as the kubelet would, with the binary built here and
		// no daemon running: it must fail saying so.
		argv := slices.Clone(p.Exec.Command)
		for i := range argv {
			argv[i] = strings.ReplaceAll(argv[i], containerfileBinary(t), binary(t))
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "XDPSTACK_IFACE=lo", "XDPSTACK_RUN_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		want := "xdpstack is not running on lo"
		if os.Geteuid() != 0 {
			want = "needs root"
		}
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%q with no daemon: got %v, %q; want a failure saying %q", argv, err, out, want)
		}
		if probe := strings.Join(p.Exec.Command, " "); !strings.Contains(probe, `status "$XDPSTACK_IFACE" --ready`) {
			t.Errorf("probe %q does not ask the daemon of $XDPSTACK_IFACE (status IFACE --ready)", probe)
		}
	})

	t.Run("scrape annotations", func(t *testing.T) {
		a := ds.Spec.Template.Annotations
		port := metricsPort(t, m)
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("annotations %v, want scrape true on port %s, path /metrics", a, port)
		}
		if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
			t.Errorf("ports %+v, want the metrics port %s", c.Ports, port)
		}
	})
}

// configPath is where the container finds the config file: the
// ConfigMap volume's mount and the item of key xdpstack.yaml.
func configPath(t *testing.T, m manifests) string {
	t.Helper()
	c := m.ds.Spec.Template.Spec.Containers[0]
	for _, v := range m.ds.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil || v.ConfigMap.Name != m.cm.Name {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name != v.Name {
				continue
			}
			for _, item := range v.ConfigMap.Items {
				if item.Key == "xdpstack.yaml" {
					return path.Join(vm.MountPath, item.Path)
				}
			}
		}
	}
	t.Fatal("the ConfigMap's xdpstack.yaml is not mounted")
	return ""
}

// metricsPort is the port of the config's metrics-addr.
func metricsPort(t *testing.T, m manifests) string {
	t.Helper()
	var config struct {
		MetricsAddr string `json:"metrics-addr"`
	}
	if err := yaml.Unmarshal([]byte(m.cm.Data["xdpstack.yaml"]), &config); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(config.MetricsAddr)
	if err != nil {
		t.Fatalf("metrics-addr %q: %v", config.MetricsAddr, err)
	}
	return port
}

// TestConfigMap checks the ConfigMap's config file with `xdpstack config
// check`, as attach --config reads it.
func TestConfigMap(t *testing.T) {
	m := readManifests(t)
	file := filepath.Join(t.TempDir(), "xdpstack.yaml")
	if err := os.WriteFile(file, []byte(m.cm.Data["xdpstack.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary(t), "config", "check", file).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "ok: ") {
		t.Errorf("config check of the ConfigMap's xdpstack.yaml: %v\n%s", err, out)
	}
}

// instruction is one line of the Containerfile.
type instruction struct {
	op   string
	args []string
}

func readContainerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ins []instruction
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		ins = append(ins, instruction{strings.ToUpper(fields[0]), fields[1:]})
	}
	return ins
}

// containerfileBinary is where the image has xdpstack: the destination
// of the COPY from the build stage.
func containerfileBinary(t *testing.T) string {
	t.Helper()
	for _, in := range readContainerfile(t) {
		if in.op == "COPY" && strings.HasPrefix(in.args[0], "--from=") {
			return in.args[len(in.args)-1]
		}
	}
	t.Fatal("Containerfile: no COPY --from the build stage")
	return ""
}

// TestContainerfile checks what can be checked without a container
// runtime: the files it copies from the context exist, the Go version
// is go.mod's, both stages are of one Debian release, the build stage
// runs make build, whose output is what the runtime stage copies and
// the entry point runs, and make build works here.
func TestContainerfile(t *testing.T) {
	args := map[string]string{}
	workdir, made := "", false
	var entrypoint string
	for _, in := range readContainerfile(t) {
		switch in.op {
		case "ARG":
			k, v, _ := strings.Cut(in.args[0], "=")
			args[k] = v
		case "FROM":
			// The runtime links the build's libc: one Debian release.
			if !strings.Contains(in.args[0], "${DEBIAN}") {
				t.Errorf("FROM %s: want the Debian release of ARG DEBIAN", in.args[0])
			}
			if strings.Contains(in.args[0], "golang:") && !strings.Contains(in.args[0], "${GO_VERSION}") {
				t.Errorf("FROM %s: want the Go version from ARG GO_VERSION", in.args[0])
			}
		case "WORKDIR":
			workdir = in.args[0]
		case "COPY":
			if strings.HasPrefix(in.args[0], "--from=") {
				want := path.Join(workdir, makefileBin(t))
				if in.args[1] != want {
					t.Errorf("COPY %s: want make build's output %s", strings.Join(in.args, " "), want)
				}
				continue
			}
			for _, src := range in.args[:len(in.args)-1] {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
			}
		case "RUN":
			made = made || strings.Join(in.args, " ") == "make build"
		case "ENTRYPOINT":
			entrypoint = strings.Join(in.args, " ")
		}
	}
	if want := "go " + args["GO_VERSION"]; !strings.Contains(readFile(t, filepath.Join(root, "go.mod")), "\n"+want+"\n") {
		t.Errorf("ARG GO_VERSION=%s, want go.mod's go version", args["GO_VERSION"])
	}
	if !made {
		t.Error("no RUN make build")
	}
	if want := `["` + containerfileBinary(t) + `"]`; entrypoint != want {
		t.Errorf("ENTRYPOINT %s, want %s", entrypoint, want)
	}
	binary(t)
}

// makefileBin is BIN of the Makefile, make build's output.
func makefileBin(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^BIN\s*:?=\s*(\S+)$`).FindStringSubmatch(readFile(t, filepath.Join(root, "Makefile")))
	if m == nil {
		t.Fatal("Makefile: no BIN")
	}
	return m[1]
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// binary runs make build as the Containerfile's build stage does, into
// a temporary folder, once for the tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xdpstack-k8s-test")
		if err != nil {
			buildErr = err
			return
		}
		built = filepath.Join(dir, "xdpstack")
		if out, err := exec.Command("make", "-C", root, "build", "BIN="+built).CombinedOutput(); err != nil {
			buildErr = &buildError{err, out}
		}
	})
	if buildErr != nil {
		t.Fatalf("make build: %v", buildErr)
	}
	return built
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
	os.Exit(code)
}

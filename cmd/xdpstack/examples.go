package main

import (
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// example is a command line that --help and the man pages show, with
// what it does.
type example struct{ say, run string }

// examples holds every command's examples by its path ("rules add"; ""
// for xdpstack itself). TestEveryCommandHasExamples fails for a command
// without any and for an example that names a flag its command lacks.
var examples = map[string][]example{
	"": {
		{"attach to eth0 and serve an echo app on the userstack", "xdpstack attach eth0 --app echo=tcp://:7"},
		{"from another terminal, see what it does", "xdpstack status eth0"},
	},
	"attach": {
		{"attach in native mode, serving HTTP from a folder on port 80", "xdpstack attach eth0 --mode native --app http=tcp://:80 --root /srv/www"},
		{"take the settings from a config file, as the systemd unit does", "xdpstack attach eth0 --config /etc/xdpstack/eth0.yaml"},
		{"sample 1 packet in 256 for capture, logging JSON", "xdpstack attach eth0 --sample-rate 8 --log-format json"},
	},
	"detach": {
		{"clean up after an attach process that died", "xdpstack detach eth0"},
		{"detach even while attach runs", "xdpstack detach eth0 --force"},
	},
	"status": {
		{"what is attached where", "xdpstack status"},
		{"one interface, as JSON", "xdpstack status eth0 --json"},
	},
	"stats": {
		{"the counters of every interface", "xdpstack stats"},
		{"rates per second, 10 samples", "xdpstack stats eth0 --rate --count 10"},
	},
	"sessions": {
		{"the userstack's sessions", "xdpstack sessions eth0"},
		{"the listening TCP sessions of namespace web, with their apps", "xdpstack sessions eth0 --proto tcp --state listening --namespace web --verbose"},
	},
	"rules": {
		{"drop SSH from a network", "xdpstack rules add eth0 --proto tcp --local :22 --remote 198.51.100.0/24 --action deny --tag no-ssh"},
		{"list the rules with their hits", "xdpstack rules list eth0"},
	},
	"rules add": {
		{"drop SSH from a network, tagged for deletion", "xdpstack rules add eth0 --proto tcp --local :22 --remote 198.51.100.0/24 --action deny --tag no-ssh"},
		{"hand DNS to the kernel", "xdpstack rules add eth0 --proto udp --local :53 --action pass"},
		{"let namespace web's apps connect only to 10.0.0.0/8", "xdpstack rules add eth0 --namespace web --remote 10.0.0.0/8 --action allow"},
	},
	"rules del": {
		{"delete the rules tagged no-ssh", "xdpstack rules del eth0 --tag no-ssh"},
		{"delete the rule with this match", "xdpstack rules del eth0 --proto udp --local :53"},
	},
	"rules list": {
		{"the global rules with their hits", "xdpstack rules list eth0"},
		{"namespace web's rules, as JSON", "xdpstack rules list eth0 --namespace web --json"},
	},
	"ns": {
		{"add namespace web, on one address", "xdpstack ns add eth0 web --secret-file /etc/xdpstack/web.secret --addr 192.0.2.10"},
		{"list the namespaces", "xdpstack ns list eth0"},
	},
	"ns add": {
		{"add namespace web, on one address", "xdpstack ns add eth0 web --secret-file /etc/xdpstack/web.secret --addr 192.0.2.10"},
	},
	"ns del": {
		{"delete namespace web", "xdpstack ns del eth0 web"},
	},
	"ns list": {
		{"the namespaces with their addresses", "xdpstack ns list eth0"},
	},
	"capture": {
		{"watch the sampled packets and their verdicts", "xdpstack capture eth0"},
		{"every packet the program drops, for 10 seconds, into Wireshark's format", "xdpstack capture eth0 --all --filter 'verdict drop' --duration 10s -w drops.pcapng"},
		{"what the userstack receives, read by tcpdump", "xdpstack capture eth0 --point userstack -w - | tcpdump -r -"},
		{"the PSP gateway's inner packets, each with its SPI", "xdpstack capture eth0 --point psp --filter 'tcp port 22'"},
	},
	"psp": {
		{"encrypt a capture with keys from a file", "xdpstack psp encrypt -r clear.pcap -w psp.pcap --key-file keys --spi 1 --version 0 --mode transport"},
		{"decrypt it again", "xdpstack psp decrypt -r psp.pcap -w clear.pcap --key-file keys"},
	},
	"psp encrypt": {
		{"transport mode, AES-GCM-128, SPI 1", "xdpstack psp encrypt -r clear.pcap -w psp.pcap --key-file keys --spi 1 --version 0 --mode transport"},
		{"as Google's psp_encrypt does with its config file", "xdpstack psp encrypt -r clear.pcap -w psp.pcap --cfg psp_encrypt.cfg"},
	},
	"psp decrypt": {
		{"verify and unwrap the PSP frames", "xdpstack psp decrypt -r psp.pcap -w clear.pcap --key-file keys"},
	},
	"psp certs": {
		{"a CA and the certificates of two gateways, each naming its gRPC and virtual addresses", "xdpstack psp certs --dir /etc/xdpstack/psp a=192.0.2.1,10.9.0.1 b=192.0.2.2,10.9.0.2"},
	},
	"psp tunnels": {
		{"the tunnels of eth0's gateway", "xdpstack psp tunnels eth0"},
	},
	"psp peers": {
		{"the peers of eth0's gateway and their key exchanges", "xdpstack psp peers eth0 --json"},
	},
	"psp rotate": {
		{"rotate the master keys now", "xdpstack psp rotate eth0"},
	},
	"psp keys": {
		{"the master keys of eth0's gateway (attached with --debug-keys), into a key file for psp decrypt --key-file", "xdpstack psp keys eth0 > keys"},
	},
	"psp derive": {
		{"the AES-GCM-256 key of SPI 0x80000001", "xdpstack psp derive --key-file keys --spi 80000001 --version 1"},
	},
	"echo": {
		{"an echo server on kernel sockets", "xdpstack echo server --uri tcp://:7"},
		{"measure it with 8 connections of 100 MB each", "xdpstack echo client --uri tcp://192.0.2.1:7 --nclients 8 --bytes 100M"},
	},
	"echo server": {
		{"TLS echo on eth0's userstack, with a self-signed certificate", "xdpstack echo server --iface eth0 --uri tls://:7 --test-cert echo.test"},
	},
	"echo client": {
		{"8 TCP connections of 100 MB, checking every byte", "xdpstack echo client --uri tcp://192.0.2.1:7 --nclients 8 --bytes 100M --verify"},
		{"QUIC with 4 streams, not checking the certificate", "xdpstack echo client --uri quic://192.0.2.1:7 --streams 4 --insecure"},
	},
	"run": {
		{"serve nginx on eth0's userstack", "xdpstack run --iface eth0 -- nginx -g 'daemon off;'"},
		{"an iperf3 server in namespace web, its secret kept off the command line", "XDPSTACK_SECRET=$(</etc/xdpstack/web.secret) xdpstack run --namespace web -- iperf3 -s"},
		{"see which sockets the userstack takes, and why", "xdpstack run --debug curl http://192.0.2.2/"},
	},
	"reload": {
		{"apply the edited config file", "xdpstack reload eth0"},
	},
	"config": {
		{"check a config file before attaching with it", "xdpstack config check /etc/xdpstack/eth0.yaml"},
	},
	"config check": {
		{"check a config file before attaching with it", "xdpstack config check /etc/xdpstack/eth0.yaml"},
	},
	"completion": {
		{"complete xdpstack's words in this bash", "xdpstack completion bash > ~/.xdpstack.bash && . ~/.xdpstack.bash"},
		{"and in every fish from now on", "xdpstack completion fish > ~/.config/fish/completions/xdpstack.fish"},
	},
	"completion bash": {
		{"for every bash on the host", "xdpstack completion bash > /usr/share/bash-completion/completions/xdpstack"},
	},
	"completion zsh": {
		{"for every zsh on the host (Debian's folder of $fpath)", "xdpstack completion zsh > /usr/share/zsh/vendor-completions/_xdpstack"},
	},
	"completion fish": {
		{"for every fish on the host", "xdpstack completion fish > /usr/share/fish/vendor_completions.d/xdpstack.fish"},
	},
	"version": {
		{"which build runs here", "xdpstack version"},
		{"as JSON, for an inventory", "xdpstack version --json"},
	},
}

// helpWithExamples is template, a urfave/cli help template, with an
// EXAMPLES section holding the examples of the command at path.
func helpWithExamples(template, path string) string {
	var b strings.Builder
	b.WriteString(template)
	b.WriteString("\nEXAMPLES:\n")
	for i, ex := range examples[path] {
		if i > 0 {
			b.WriteString("\n")
		}
		// As a quoted template string: the text is printed as it is.
		b.WriteString("{{" + strconv.Quote("   # "+ex.say+"\n   "+ex.run+"\n") + "}}")
	}
	return b.String()
}

// addExamples gives every command of app a help text ending with its
// examples.
func addExamples(app *cli.App) {
	app.CustomAppHelpTemplate = helpWithExamples(cli.AppHelpTemplate, "")
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, cmd := range cmds {
			p := strings.TrimSpace(path + " " + cmd.Name)
			template := cli.CommandHelpTemplate
			if len(cmd.Subcommands) > 0 {
				template = cli.SubcommandHelpTemplate
			}
			if len(examples[p]) > 0 {
				cmd.CustomHelpTemplate = helpWithExamples(template, p)
			}
			walk(p, cmd.Subcommands)
		}
	}
	walk("", app.Commands)
}

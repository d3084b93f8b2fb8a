// Command xdpstack is the CLI of the xdpstack dataplane.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	app := &cli.App{
		Name:     "xdpstack",
		Usage:    "a kernel-cooperative XDP dataplane",
		Commands: []*cli.Command{pspCommand()},
	}
	err := app.RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdpstack:", err)
		os.Exit(1)
	}
}

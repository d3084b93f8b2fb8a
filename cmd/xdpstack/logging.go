package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/urfave/cli/v2"
)

var logFlags = []cli.Flag{
	&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log from this level up: debug, info, warn or error", EnvVars: []string{"XDPSTACK_LOG_LEVEL"}},
	&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log lines as text (key=value) or json", EnvVars: []string{"XDPSTACK_LOG_FORMAT"}},
}

// setupLogging makes the default logger the one the flags ask for,
// writing timestamped, levelled records to w (stderr).
func setupLogging(c *cli.Context, w io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch c.String("log-format") {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))
	}
	slog.SetDefault(slog.New(h))
	return nil
}

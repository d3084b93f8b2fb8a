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
// writing timestamped, levelled records to w (stderr). attach does it
// again when its config file sets the log keys.
func setupLogging(c *cli.Context, w io.Writer) error {
	h, err := settings{flags: c}.logHandler(w)
	if err == nil {
		slog.SetDefault(slog.New(h))
	}
	return err
}

// logHandler is the handler that log-level and log-format ask for.
func (s settings) logHandler(w io.Writer) (slog.Handler, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.String("log-level"))); err != nil {
		return nil, fmt.Errorf("%s %q: want debug, info, warn or error", s.label("log-level"), s.String("log-level"))
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.String("log-format") {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("%s %q: want text or json", s.label("log-format"), s.String("log-format"))
}

// Package cli is the command line of fleet and of every binary built on it
// (package github.com/fleetworks/fleet): `run` joins a Kafka consumer group
// and processes events; `dev` runs the domains on an embedded broker and
// Redis, with a self-checking demo stream when the binary has one; `bench`
// measures the engine; `publish` publishes CloudEvents; `status` shows a
// running process; `keys` inspects or forgets idempotency records; `dlq`
// lists and replays dead letters; `version` prints the build.
//
// The command line is parsed with github.com/alecthomas/kong: flags, FLEET_*
// environment variables, defaults, enums and subcommands are declared once,
// in struct tags, parse errors are single clear lines, and the library is
// small and well kept. This package holds wiring only; the work is done by
// consumer/, dedupe/ and handlers/.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/alecthomas/kong"
)

type cli struct {
	Run     runCmd     `cmd:"" help:"Join a consumer group and process events."`
	Dev     devCmd     `cmd:"" help:"Run a self-checking demo on an embedded broker and Redis."`
	Bench   benchCmd   `cmd:"" help:"Measure fleet against a naive idempotent loop on the same data."`
	Publish publishCmd `cmd:"" help:"Publish CloudEvents: one from flags, or many as JSON lines from standard input or --file."`
	Status  statusCmd  `cmd:"" help:"Show what a running fleet process is doing: assignments, offsets, lag, in-flight events, last errors."`
	Keys    keysCmd    `cmd:"" help:"Inspect or forget idempotency records."`
	DLQ     dlqCmd     `cmd:"" name:"dlq" help:"List and replay dead letters."`
	Console consoleCmd `cmd:"" help:"Serve the operator console of a consumer group in a browser: members, lag, retry tiers, held keys, dead letters; replay, forget, unblock."`
	Version versionCmd `cmd:"" help:"Print the version."`

	BenchWorker     benchWorkerCmd     `cmd:"" hidden:"" name:"bench-worker" help:"One measured worker of fleet bench."`
	BenchPartitions benchPartitionsCmd `cmd:"" hidden:"" name:"bench-partitions" help:"Measure what the partitions assigned to one worker cost it."`
	BenchCurves     benchCurvesCmd     `cmd:"" hidden:"" name:"bench-curves" help:"Measure the cost curves of docs/performance.md: key cardinality, Redis memory, partitions, latency by load."`
}

type versionCmd struct{}

func (versionCmd) Run(app *App, stdout io.Writer) error {
	_, err := fmt.Fprintf(stdout, "%s %s (revision %s, %s)\n", app.name(), app.version(), app.revision(), runtime.Version())
	return err
}

// configError is bad input from the user: reported in one line, exit 2.
type configError struct{ err error }

func (e configError) Error() string { return "invalid configuration: " + oneLine(e.err) }

func (e configError) Unwrap() error { return e.err }

// usageError is a command line kong cannot parse: exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return oneLine(e.err) }

func (e usageError) Unwrap() error { return e.err }

func oneLine(err error) string { return printable(strings.ReplaceAll(err.Error(), "\n", "; ")) }

// Main runs the command that os.Args names and ends the process: exit code
// 0 for success, 2 for bad configuration or usage, 1 otherwise. It is the
// only place that ends the process.
func Main(app App) {
	err := Run(app, os.Args[1:], os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s\n", app.name(), oneLine(err))
	}
	os.Exit(exitCode(err))
}

// exitCode is 0 for success, 2 for bad configuration or usage, 1 otherwise.
func exitCode(err error) int {
	var ce configError
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce), errors.As(err, &ue):
		return 2
	}
	return 1
}

// helpArgs turns `fleet help [command …]` into `fleet [command …] --help`,
// as people type it.
func helpArgs(args []string) []string {
	if len(args) == 0 || args[0] != "help" {
		return args
	}
	return append(append([]string(nil), args[1:]...), "--help")
}

// Run parses args and runs the command they name for app. Help goes to
// stdout.
func Run(app App, args []string, stdout io.Writer) error {
	if err := app.check(); err != nil {
		return configError{err}
	}
	var c cli
	// kong ends the process itself after printing --help unless told
	// otherwise; record the request instead so that main exits once.
	helped := false
	parser, err := kong.New(&c,
		kong.Name(app.name()),
		kong.Description(app.description()),
		kong.Vars{"dev_topic": app.devTopic()},
		kong.Bind(&app),
		kong.Writers(stdout, io.Discard),
		kong.Exit(func(int) { helped = true }),
		kong.BindTo(stdout, (*io.Writer)(nil)),
	)
	if err != nil {
		return err
	}
	kctx, err := parser.Parse(helpArgs(args))
	if helped {
		return nil
	}
	if err != nil {
		return usageError{err}
	}
	return kctx.Run()
}

// Command tetrascope is a forward proxy and log follower that shows, live
// and per client, why antivirus definition updates of Cisco Secure Endpoint
// connectors fail.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status: 0 ok, 1 a
// runtime failure, 2 bad usage or configuration.
func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "tetrascope:", err)
	var ce *configError
	if errors.As(err, &ce) || isUsage(err) {
		return 2
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "tetrascope",
		Short: "See, per client, why TETRA definition updates fail",
		Long: "tetrascope sits in the path of endpoints' web traffic (or follows a proxy's\n" +
			"access log) and shows live, per client, why Cisco Secure Endpoint TETRA\n" +
			"definition updates fail, next to the lasterror the endpoint would record.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err}
	})
	root.AddCommand(newServe(), newTail(), newExplain(), newProbe(), newReport(), newVersion())
	return root
}

// usageError is a bad command line: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func isUsage(err error) bool {
	var ue *usageError
	if errors.As(err, &ue) {
		return true
	}
	// cobra's own argument and command errors carry no type.
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand",
		"accepts ", "requires at least", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "tetrascope %s\n", version)
			if bi, ok := debug.ReadBuildInfo(); ok {
				fmt.Fprintf(out, "go %s\n", bi.GoVersion)
				for _, s := range bi.Settings {
					switch s.Key {
					case "vcs.revision", "vcs.time", "vcs.modified", "CGO_ENABLED":
						fmt.Fprintf(out, "%s %s\n", s.Key, s.Value)
					}
				}
			}
			return nil
		},
	}
}

package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tetrascope/tetrascope/inspect"
)

func newExplain() *cobra.Command {
	return &cobra.Command{
		Use:   "explain CODE...",
		Short: "Decode lasterror codes (unsigned, signed or 0x hex)",
		Long: "explain decodes the //tetra/lasterror values of a connector's local.xml:\n" +
			"the unsigned and signed forms, what the code means, what this proxy\n" +
			"should show for it, and what to check. Negative values are codes, not\n" +
			"flags: tetrascope explain -2103 works.",
		// Negative codes look like flags; parse nothing.
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
				return cmd.Help()
			}
			if len(args) == 0 {
				return &usageError{fmt.Errorf("explain: name at least one code")}
			}
			var codes []inspect.LastError
			for _, a := range args {
				if a == "--" {
					continue
				}
				c, err := inspect.ParseLastError(a)
				if err != nil {
					return &usageError{err}
				}
				codes = append(codes, c)
			}
			for i, c := range codes {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				explain(cmd.OutOrStdout(), c)
			}
			return nil
		},
	}
}

func explain(w io.Writer, c inspect.LastError) {
	fmt.Fprintf(w, "%d (signed %d, 0x%08X)\n", uint32(c), c.Signed(), uint32(c))
	if c == inspect.LastErrorNone {
		fmt.Fprintln(w, "  no error recorded")
		return
	}
	info, ok := inspect.LookupLastError(c)
	if !ok {
		fmt.Fprintln(w, "  unknown code: not in the table of known TETRA update errors")
		return
	}
	fmt.Fprintf(w, "  meaning:    %s (%s)\n", info.Meaning, info.Basis)
	if info.Evidence != "" {
		fmt.Fprintf(w, "  proxy side: %s\n", info.Evidence)
	}
	fmt.Fprintf(w, "  check:      %s\n", info.Action)
}

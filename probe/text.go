package probe

import (
	"fmt"
	"io"
	"strings"

	"github.com/tetrascope/tetrascope/inspect"
)

// WriteText writes the report for a person: what was probed, one line per
// step with its timing, the advice under each step that has some, and a
// closing line naming the first failure and the lasterror an endpoint on
// this path would most likely record.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "probe of %s", r.Target)
	if r.Proxy != "" {
		fmt.Fprintf(&b, " through the proxy %s", r.Proxy)
		if r.User != "" {
			fmt.Fprintf(&b, " as user %q", r.User)
		}
	} else {
		b.WriteString(" without a proxy")
	}
	b.WriteString("\n\n")

	for _, s := range r.Steps {
		mark := "ok  "
		if !s.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s  %-11s %9.1f ms  %s\n", mark, s.Name, s.MS, s.Detail)
		if s.Advice != "" {
			label := "note"
			if !s.OK {
				label = "advice"
			}
			fmt.Fprintf(&b, "%*s%s: %s\n", 31, "", label, s.Advice)
		}
	}
	b.WriteString("\n")

	f, failed := r.Failed()
	switch {
	case !failed && len(r.Steps) == 0:
		b.WriteString("result: nothing was probed\n")
	case !failed:
		b.WriteString("result: every step passed; nothing on this path stops a definition " +
			"download from here\n")
	default:
		fmt.Fprintf(&b, "result: failed at %s; an endpoint on this path would most likely "+
			"record lasterror %d (%d", f.Name, uint32(f.LastError), f.LastError.Signed())
		if info, ok := inspect.LookupLastError(f.LastError); ok {
			fmt.Fprintf(&b, ", %s", info.Meaning)
		}
		fmt.Fprintf(&b, "), %s\n", f.Basis)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

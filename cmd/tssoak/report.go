package main

import (
	"fmt"
	"io"
	"runtime"
	"time"
)

// Tolerances of the verdict: what may remain above the baseline once the
// load is gone. A few goroutines and descriptors come and go with the
// page's ticker and the HTTP keep-alives of the sampling itself.
const (
	slackGoroutines = 10
	slackFDs        = 10
	// pipeFDsPerTunnel bounds the splice pipe descriptors Go may keep
	// pooled after the load: one pipe (two descriptors) per direction of
	// each tunnel that was open at once. The garbage collector closes
	// them later.
	pipeFDsPerTunnel = 4
)

func mib(b float64) string { return fmt.Sprintf("%.1f", b/(1<<20)) }

// printTable writes the samples as a Markdown table.
func printTable(w io.Writer, o options, table []sample, l *load) {
	fmt.Fprintf(w, "\ntssoak: %d tunnels (half silent, half a 64-byte echo every 5 s) for %v, "+
		"%d short downloads/s, %d silent viewers; %s, %d CPUs\n\n",
		o.tunnels, o.duration, o.churn, o.viewers, runtime.Version(), runtime.NumCPU())
	fmt.Fprintln(w, "| phase | t | goroutines | threads | sockets | pipe fds | other fds | RSS MiB | "+
		"heap MiB | open tunnels | ended conns | stored | dropped | viewers (dropped) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	t0 := table[0].at
	for _, s := range table {
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %d | %s | %s | %d | %.0f | %.0f | %.0f | "+
			"%d (%.0f) |\n", s.phase, s.at.Sub(t0).Round(time.Second), s.goroutines, s.threads,
			s.sockets, s.pipes, s.others, mib(s.rss), mib(s.heap), s.tunnels, s.connections,
			s.stored, s.dropped, s.viewers, s.viewersDropped)
	}
	last := table[len(table)-1]
	fmt.Fprintf(w, "\n/proc at the end: %d threads, RSS %s MiB. Clients: %d pings echoed, "+
		"%d short downloads, %d failures.\n", last.procThreads, mib(last.procRSS),
		l.pings.Load(), l.downloads.Load(), l.failures.Load())
}

// verdict compares the last sample with the first and reports whether the
// process came back to its baseline: goroutines and sockets (and every
// descriptor that is not a pooled splice pipe) within a small slack, the
// pipes within what the peak of tunnels explains.
func verdict(w io.Writer, o options, before, after sample) bool {
	ok := true
	check := func(what string, b, a, slack int) {
		if a > b+slack {
			fmt.Fprintf(w, "FAIL: %s: %d after the load, %d before (allowed: +%d)\n", what, a, b, slack)
			ok = false
		}
	}
	check("goroutines", before.goroutines, after.goroutines, slackGoroutines)
	check("sockets", before.sockets, after.sockets, slackFDs)
	check("other descriptors", before.others, after.others, slackFDs)
	check("splice pipe descriptors", before.pipes, after.pipes, pipeFDsPerTunnel*o.tunnels)
	if after.pipes > before.pipes {
		fmt.Fprintf(w, "note: %d splice pipe descriptors still pooled; the garbage collector "+
			"closes them within a few of its cycles (-gcwait 8m shows it)\n", after.pipes-before.pipes)
	}
	if after.heap > 2*before.heap+16<<20 {
		fmt.Fprintf(w, "note: heap %s MiB after the load, %s MiB before\n", mib(after.heap),
			mib(before.heap))
	}
	if ok {
		fmt.Fprintln(w, "ok: goroutines and descriptors back to the baseline")
	}
	return ok
}

//go:build unix

package report_test

import (
	"syscall"
	"time"
)

// cpuTime is the processor time the process has used, user and system. On
// a shared machine it says more about the report's cost than the wall
// clock, which also counts waiting for the processors.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

//go:build unix

package store

import (
	"syscall"
	"time"
)

// cpuTime is the processor time the process has used, user and system:
// unlike the wall clock it does not count time spent waiting for a busy
// machine's processors or for the disk.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

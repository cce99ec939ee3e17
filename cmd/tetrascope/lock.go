package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lockDB takes an exclusive lock beside the database so that a second
// serve or tail on the same file fails at once instead of mixing its event
// ids with the first one's. Readers (report) take no lock. The lock is
// released when the process ends.
func lockDB(db string) (unlock func(), err error) {
	path := db + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, badConfig("db: cannot create the lock file %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		data, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(data))
		if _, perr := strconv.Atoi(pid); perr != nil {
			pid = "unknown"
		}
		return nil, fmt.Errorf("db %s is in use by another tetrascope (pid %s): "+
			"give each instance its own --db", db, pid)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

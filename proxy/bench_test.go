package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// countingRecorder is a Recorder that only counts, so that a benchmark
// measures the proxy and not what is done with its events.
type countingRecorder struct {
	opens, done atomic.Int64
	notOK       atomic.Int64
}

func (r *countingRecorder) Open(*inspect.Event) { r.opens.Add(1) }

func (r *countingRecorder) Done(ev *inspect.Event) {
	r.done.Add(1)
	if ev.Outcome != inspect.OK {
		r.notOK.Add(1)
	}
}

// rawOrigin answers every request of a keep-alive connection with the same
// answer, reading request heads only, at the least cost a server can: the
// benchmark's processor goes to the proxy.
func rawOrigin(tb testing.TB, answer []byte) int {
	tb.Helper()
	return serveLoopback(tb, func(c net.Conn) {
		br := bufio.NewReaderSize(c, 4096)
		for {
			if err := skipHead(br); err != nil {
				return
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	})
}

// skipHead reads one message head up to its empty line.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return nil
		}
	}
}

// readAnswer reads one answer whose body is n bytes, checking its status.
func readAnswer(br *bufio.Reader, n int) error {
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("answered %q", bytes.TrimSpace(status))
	}
	if err := skipHead(br); err != nil {
		return err
	}
	_, err = br.Discard(n)
	return err
}

// BenchmarkPlainGet sends GETs of a 2 KiB revocation answer over 32
// keep-alive client connections, as cmd/tsbench's plain GET scenario does:
// through the proxy in absolute form (via=proxy), and straight to the origin
// (via=direct), which is what the clients and the origin cost by
// themselves. cpu-us/op is the processor time of the whole process per GET
// (user and system, from getrusage), so the proxy's own share is the
// difference between the two; allocs/op of via=proxy are nearly all the
// proxy's.
func BenchmarkPlainGet(b *testing.B) {
	const size = 2048
	answer := append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\n"+
		"Content-Length: "+strconv.Itoa(size)+"\r\n\r\n"), bytes.Repeat([]byte("x"), size)...)
	origin := rawOrigin(b, answer)
	hp := net.JoinHostPort("crl.identrust.com", strconv.Itoa(origin))

	b.Run("via=direct", func(b *testing.B) {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(origin))
		req := []byte("GET /tetra.crl HTTP/1.1\r\nHost: " + hp +
			"\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
		runGets(b, addr, req, size)
	})
	b.Run("via=proxy", func(b *testing.B) {
		rec := &countingRecorder{}
		f := startRecorded(b, rec, "crl.identrust.com")
		req := []byte("GET http://" + hp + "/tetra.crl HTTP/1.1\r\nHost: " + hp +
			"\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
		runGets(b, f.proxyURL.Host, req, size)
		if n := rec.notOK.Load(); n > 0 {
			b.Fatalf("%d of %d GETs were not recorded as ok", n, rec.done.Load())
		}
	})
}

// runGets sends req over 32 keep-alive connections to addr, b.N times in
// all, and reports the process's processor time per GET.
func runGets(b *testing.B, addr string, req []byte, size int) {
	b.SetParallelism((32 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	before := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReaderSize(c, 8192)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if err := readAnswer(br, size); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the processor time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

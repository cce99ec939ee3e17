package report

import (
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// MaxBuckets is the most buckets a timeline has; the step is the shortest
// round one that covers the window in that many.
const MaxBuckets = 48

// steps are the round bucket lengths a timeline picks from.
var steps = []time.Duration{
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour,
	30 * 24 * time.Hour, 90 * 24 * time.Hour, 365 * 24 * time.Hour,
}

// Timeline is the failures of the window over time, per outcome: bucket i
// covers [Start + i*Step, Start + (i+1)*Step).
type Timeline struct {
	// Start is the window's start rounded down to a multiple of the step
	// (in UTC, so hourly and daily buckets begin on the hour and at
	// midnight).
	Start time.Time `json:"start"`
	// Step is the length of a bucket, in seconds; Buckets their number.
	Step    float64 `json:"step_s"`
	Buckets int     `json:"buckets"`
	// Series holds, for each failure outcome that occurred in the window,
	// the number of failures per bucket.
	Series map[inspect.Outcome][]int `json:"series"`
}

// chartAcc counts failures per bucket while events are added.
type chartAcc struct {
	start  time.Time
	step   time.Duration
	n      int
	counts map[inspect.Outcome][]int
}

func newChartAcc(since, until time.Time) *chartAcc {
	span := until.Sub(since)
	step := steps[len(steps)-1]
	for _, s := range steps {
		if span <= s*MaxBuckets {
			step = s
			break
		}
	}
	if span > step*MaxBuckets {
		years := (span/MaxBuckets + step - 1) / step
		step *= years
	}
	start := since.Truncate(step)
	n := int((until.Sub(start) + step - 1) / step)
	return &chartAcc{start: start, step: step, n: max(n, 1),
		counts: make(map[inspect.Outcome][]int)}
}

// add counts one failure starting at t.
func (c *chartAcc) add(t time.Time, o inspect.Outcome) {
	i := int(t.Sub(c.start) / c.step)
	if i < 0 || i >= c.n {
		return
	}
	s := c.counts[o]
	if s == nil {
		s = make([]int, c.n)
		c.counts[o] = s
	}
	s[i]++
}

func (c *chartAcc) timeline() Timeline {
	tl := Timeline{Start: c.start, Step: c.step.Seconds(), Buckets: c.n,
		Series: make(map[inspect.Outcome][]int, len(c.counts))}
	for o, s := range c.counts {
		tl.Series[o] = append([]int(nil), s...)
	}
	return tl
}

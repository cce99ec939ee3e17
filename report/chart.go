package report

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// outcomeStyle is how a failure outcome is drawn: a colour of the
// Okabe-Ito palette, which stays distinct for the common kinds of colour
// blindness, and for the outcomes past the eighth the same colours with
// white hatching. The legend and every bar's tooltip name the outcome, so
// colour is never the only key.
type outcomeStyle struct {
	Color string
	Hatch bool
}

var outcomeStyles = map[inspect.Outcome]outcomeStyle{
	inspect.DNSFailure:          {"#0072B2", false}, // blue
	inspect.ConnectRefused:      {"#E69F00", false}, // orange
	inspect.ConnectTimeout:      {"#56B4E9", false}, // sky blue
	inspect.UpstreamUnreachable: {"#009E73", false}, // bluish green
	inspect.UpstreamRefused:     {"#F0E442", false}, // yellow
	inspect.AuthFailed:          {"#D55E00", false}, // vermillion
	inspect.TLSAborted:          {"#CC79A7", false}, // reddish purple
	inspect.DownloadAborted:     {"#4D4D4D", false}, // dark grey
	inspect.HTTPError:           {"#0072B2", true},
	inspect.Denied:              {"#E69F00", true},
	inspect.BadRequest:          {"#56B4E9", true},
	inspect.Unreachable:         {"#009E73", true},
}

// fill is the SVG fill of outcome o.
func fill(o inspect.Outcome) string {
	st := outcomeStyles[o]
	if st.Hatch {
		return "url(#hatch-" + string(o) + ")"
	}
	if st.Color == "" {
		return "#999999"
	}
	return st.Color
}

// chartView is the failure chart, laid out for the template.
type chartView struct {
	W, H                       int
	PlotX, PlotY, PlotW, PlotH string
	Bottom                     string // y of the x axis
	PlotRight, TickEnd         string
	XLabelY, YLabelX           string
	MidX, MidY                 string
	Bars                       []barView
	YTicks, XTicks             []tickView
	Legend                     []legendView
	Patterns                   []legendView // outcomes drawn hatched
	Empty                      bool
	Desc                       string
}

type barView struct {
	Segs []segView
}

type segView struct {
	X, Y, W, H string
	Fill       string
	Title      string
}

type tickView struct {
	Pos    string
	Label  string
	Anchor string // text-anchor of an x label
}

type legendView struct {
	Outcome inspect.Outcome
	Fill    string
	Color   string
	Total   int
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 960, 280
	marginL, marginR       = 48, 12
	marginTop, marginBelow = 12, 44
)

// layoutChart draws tl as stacked bars, one per bucket, the outcomes in the
// order of inspect.Outcomes from the bottom up.
func layoutChart(tl Timeline) chartView {
	pw, ph := float64(chartW-marginL-marginR), float64(chartH-marginTop-marginBelow)
	v := chartView{W: chartW, H: chartH, PlotX: num(marginL), PlotY: num(marginTop),
		PlotW: num(pw), PlotH: num(ph), Bottom: num(marginTop + ph),
		PlotRight: num(marginL + pw), TickEnd: num(marginTop + ph + 5),
		XLabelY: num(marginTop + ph + 20), YLabelX: num(marginL - 6),
		MidX: num(marginL + pw/2), MidY: num(marginTop + ph/2)}

	var series []inspect.Outcome
	for _, o := range inspect.Outcomes {
		if s, ok := tl.Series[o]; ok && sum(s) > 0 {
			series = append(series, o)
			v.Legend = append(v.Legend, legendView{Outcome: o, Fill: fill(o),
				Color: outcomeStyles[o].Color, Total: sum(s)})
		}
	}
	for _, o := range inspect.Outcomes {
		if st, ok := outcomeStyles[o]; ok && st.Hatch {
			v.Patterns = append(v.Patterns, legendView{Outcome: o, Color: st.Color})
		}
	}

	peak := 0
	for i := range tl.Buckets {
		t := 0
		for _, o := range series {
			t += tl.Series[o][i]
		}
		peak = max(peak, t)
	}
	v.Empty = peak == 0
	top, tick := niceScale(peak)
	for y := 0; y <= top; y += tick {
		v.YTicks = append(v.YTicks, tickView{Pos: num(marginTop + ph - ph*float64(y)/float64(top)),
			Label: strconv.Itoa(y)})
	}

	step := time.Duration(tl.Step * float64(time.Second))
	n := max(tl.Buckets, 1)
	slot := pw / float64(n)
	barW := math.Max(slot*0.8, 1)
	for i := range tl.Buckets {
		x := marginL + slot*float64(i) + (slot-barW)/2
		from := tl.Start.Add(time.Duration(i) * step)
		y := marginTop + ph
		var bar barView
		for _, o := range series {
			c := tl.Series[o][i]
			if c == 0 {
				continue
			}
			h := ph * float64(c) / float64(top)
			y -= h
			bar.Segs = append(bar.Segs, segView{X: num(x), Y: num(y), W: num(barW), H: num(h),
				Fill: fill(o), Title: fmt.Sprintf("%s to %s UTC: %s %d", stamp(from, step),
					stamp(from.Add(step), step), o, c)})
		}
		v.Bars = append(v.Bars, bar)
	}

	// About six time labels, on bucket boundaries.
	every := max(1, (n+5)/6)
	for i := 0; i <= n; i += every {
		anchor := "middle"
		if i+every > n {
			anchor = "end" // the last label stays inside the picture
		}
		v.XTicks = append(v.XTicks, tickView{Pos: num(marginL + slot*float64(i)),
			Label: stamp(tl.Start.Add(time.Duration(i)*step), step), Anchor: anchor})
	}

	total := 0
	for _, l := range v.Legend {
		total += l.Total
	}
	v.Desc = fmt.Sprintf("%d failures from %s to %s UTC in %d buckets of %s, stacked by outcome.",
		total, stamp(tl.Start, step), stamp(tl.Start.Add(time.Duration(n)*step), step), n,
		stepText(step))
	return v
}

// niceScale returns the top of the y axis for a peak value and the tick
// spacing: 1, 2 or 5 times a power of ten, about five ticks.
func niceScale(peak int) (top, tick int) {
	if peak <= 0 {
		return 1, 1
	}
	raw := float64(peak) / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	tick = int(mag)
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			tick = int(m * mag)
			break
		}
	}
	tick = max(tick, 1)
	top = (peak + tick - 1) / tick * tick
	return top, tick
}

// stamp writes a bucket boundary as precisely as the step needs.
func stamp(t time.Time, step time.Duration) string {
	t = t.UTC()
	if step >= 24*time.Hour {
		return t.Format("2006-01-02")
	}
	return t.Format("01-02 15:04")
}

// stepText writes a duration in whole days, hours or minutes when it is
// one.
func stepText(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		if d == 24*time.Hour {
			return "1 day"
		}
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d%time.Hour == 0:
		if d == time.Hour {
			return "1 hour"
		}
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func sum(s []int) int {
	t := 0
	for _, v := range s {
		t += v
	}
	return t
}

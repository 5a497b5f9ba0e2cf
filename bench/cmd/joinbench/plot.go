package main

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// niceStep returns a step of 1, 2 or 5 × 10^k that cuts [0, hi] into at
// most about n intervals.
func niceStep(hi float64, n int) float64 {
	if hi <= 0 {
		return 1
	}
	raw := hi / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

type line struct {
	label, color string
	ys           []float64
}

type panel struct {
	title string
	lines []line
}

const (
	plotW      = 960
	marginL    = 72
	marginR    = 24
	panelH     = 190
	panelGap   = 56
	firstPanel = 96
)

// svg draws the per-second figures of the whole seconds of the steady
// load: requests per second, p99 latency and what the joiner received,
// with the join shaded.
func (r *report) svg() string {
	n := min(len(r.series), int(r.loadEnded/time.Second)) // whole seconds only
	get, set, total := make([]float64, n), make([]float64, n), make([]float64, n)
	getP99, setP99, recv := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range n {
		s := &r.series[i]
		get[i], set[i] = float64(s.get.Count()), float64(s.set.Count())
		total[i] = get[i] + set[i]
		getP99[i] = float64(s.get.Quantile(0.99)) / 1e6
		setP99[i] = float64(s.set.Quantile(0.99)) / 1e6
		recv[i] = s.received / (1 << 20)
	}
	panels := []panel{
		{"requests per second", []line{{"all", "#222222", total}, {"GET", "#1f77b4", get}, {"SET", "#d62728", set}}},
		{"p99 latency per second (ms)", []line{{"GET p99", "#1f77b4", getP99}, {"SET p99", "#d62728", setP99}}},
		{"n4: anti-entropy bytes received (MiB/s)", []line{{"received", "#2ca02c", recv}}},
	}
	height := firstPanel + len(panels)*(panelH+panelGap) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, height, plotW, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	title := fmt.Sprintf("ringkv: a fourth node joins three under load — %d keys, %s of data, N=%d, --repair-rate %s", r.keys, human(float64(r.logical)), replicas, *flagRepairRate)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, html.EscapeString(title))
	sub := fmt.Sprintf("%d connections via n1-n3, one request at a time, %.0f%% GETs at R=2, the rest SETs at W=2; %s",
		*flagConc, *flagGetRatio*100, r.started.UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, `<text x="%d" y="40" fill="#444">%s</text>`+"\n", marginL, html.EscapeString(sub))
	sub = fmt.Sprintf("yellow: n4 started → normal (%s); blue: n1-n3 drop the partitions they no longer replicate", dur(r.tl.normal-r.tl.launched))
	fmt.Fprintf(&b, `<text x="%d" y="56" fill="#444">%s</text>`+"\n", marginL, html.EscapeString(sub))

	xmax := float64(max(n, 1))
	xstep := niceStep(xmax, 12)
	plotWidth := float64(plotW - marginL - marginR)
	xpos := func(sec float64) float64 { return marginL + sec/xmax*plotWidth }
	for pi, p := range panels {
		top := float64(firstPanel + pi*(panelH+panelGap))
		bottom := top + panelH
		ymax := 0.0
		for _, l := range p.lines {
			for _, y := range l.ys {
				ymax = max(ymax, y)
			}
		}
		// Headroom above the highest point for the panel's title and legend.
		ystep := niceStep(ymax*1.25, 5)
		ytop := math.Max(ystep, math.Ceil(ymax*1.25/ystep)*ystep)
		ypos := func(v float64) float64 { return bottom - v/ytop*panelH }
		// The join, and the old owners' drops.
		if r.tl.normal > r.tl.launched {
			x0, x1 := xpos(r.tl.launched.Seconds()), xpos(r.tl.normal.Seconds())
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#fff2cc"/>`+"\n", x0, top, x1-x0, panelH)
		}
		if from, to := r.dropsBegan(), min(r.dropsDone(), r.loadEnded); from > 0 && to > from {
			x0, x1 := xpos(from.Seconds()), xpos(to.Seconds())
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#dde8f5"/>`+"\n", x0, top, x1-x0, panelH)
		}
		for mi, m := range []struct {
			at    time.Duration
			label string
		}{{r.tl.launched, "n4 started"}, {r.tl.streaming, "streaming"}, {r.tl.normal, "n4 normal"}, {r.dropsBegan(), "drops begin"}, {r.dropsDone(), "drops done"}} {
			if m.at <= 0 || m.at > r.loadEnded {
				continue
			}
			x := xpos(m.at.Seconds())
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#b8860b" stroke-dasharray="4 3"/>`+"\n", x, top, x, bottom)
			if pi == 0 { // staggered, so that close marks stay readable
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#8b6508" font-size="11" text-anchor="middle">%s</text>`+"\n", x, top-4-float64(mi%2)*12, m.label)
			}
		}
		// Axes and grid.
		for v := 0.0; v <= ytop+ystep/2; v += ystep {
			y := ypos(v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e0e0e0"/>`+"\n", marginL, y, plotW-marginR, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", marginL-6, y+4, tick(v, ystep))
		}
		for v := 0.0; v <= xmax; v += xstep {
			x := xpos(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`+"\n", x, bottom, x, bottom+4)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", x, bottom+16, tick(v, xstep))
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#444"/>`+"\n", marginL, top, plotWidth, panelH)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", marginL+6, top+15, html.EscapeString(p.title))
		if pi == len(panels)-1 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">seconds since the steady load began</text>`+"\n", marginL+plotWidth/2, bottom+34)
		}
		// Lines, one point per second at its middle, then the legend over
		// them.
		for _, l := range p.lines {
			var pts []string
			for i, y := range l.ys {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(float64(i)+0.5), ypos(y)))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", l.color, strings.Join(pts, " "))
		}
		lx := float64(plotW - marginR - 8)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="80" height="%d" fill="white" fill-opacity="0.85" stroke="#ccc"/>`+"\n", lx-76, top+3, 15*len(p.lines)+4)
		for li, l := range p.lines {
			ly := top + 15 + float64(li)*15
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx-70, ly-4, lx-52, ly-4, l.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx-48, ly, html.EscapeString(l.label))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// tick formats an axis value with as many decimals as its step needs.
func tick(v, step float64) string {
	if step >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	d := int(math.Ceil(-math.Log10(step)))
	return fmt.Sprintf("%.*f", d, v)
}

// dropsDone returns when the last of n1-n3 finished its drop, or 0 when
// one did not.
func (r *report) dropsDone() time.Duration {
	var last time.Duration
	for _, id := range []string{"n1", "n2", "n3"} {
		d := r.drops[id]
		if d == nil || d.done == 0 {
			return 0
		}
		last = max(last, d.done)
	}
	return last
}

// dropsBegan returns when the first of n1-n3's drops was seen, or 0.
func (r *report) dropsBegan() time.Duration {
	var first time.Duration
	for _, d := range r.drops {
		if first == 0 || d.seen < first {
			first = d.seen
		}
	}
	return first
}

package main

import (
	"fmt"
	"html"
	"math"
	"strings"
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

// tick formats an axis value with as many decimals as its step needs.
func tick(v, step float64) string {
	if step >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	d := int(math.Ceil(-math.Log10(step)))
	return fmt.Sprintf("%.*f", d, v)
}

type series struct {
	label, color string
	xs, ys       []float64
}

type panel struct {
	title string
	lines []series
}

type mark struct {
	x     float64
	label string
}

var palette = []string{"#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#1f77b4", "#2ca02c", "#9467bd", "#17becf", "#7f7f7f"}

const (
	plotW      = 960
	marginL    = 72
	marginR    = 200 // the legend sits right of the panels
	panelH     = 200
	panelGap   = 56
	firstPanel = 76
)

// chart draws panels stacked over one x axis. With logX the x axis is
// log2 (client counts), ticks at the points' x values.
func chart(title, sub, xlabel string, logX bool, panels []panel, marks []mark) string {
	xmin, xmax := math.Inf(1), math.Inf(-1)
	var xticks []float64
	seen := map[float64]bool{}
	for _, p := range panels {
		for _, l := range p.lines {
			for _, x := range l.xs {
				xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
				if !seen[x] {
					seen[x] = true
					xticks = append(xticks, x)
				}
			}
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 0, 1
	}
	tx := func(x float64) float64 { return x }
	if logX {
		tx = func(x float64) float64 { return math.Log2(math.Max(x, 1)) }
	} else {
		xmin, xmax = 0, math.Ceil(xmax)
		xticks = nil
		step := niceStep(xmax, 12)
		for v := 0.0; v <= xmax+step/2; v += step {
			xticks = append(xticks, v)
		}
	}
	lo, hi := tx(xmin), tx(xmax)
	if hi <= lo {
		hi = lo + 1
	}
	plotWidth := float64(plotW - marginL - marginR)
	xpos := func(x float64) float64 { return marginL + (tx(x)-lo)/(hi-lo)*plotWidth }
	height := firstPanel + len(panels)*(panelH+panelGap) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, height, plotW, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", marginL, html.EscapeString(title))
	for i, s := range strings.Split(sub, "\n") {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#444">%s</text>`+"\n", marginL, 40+16*i, html.EscapeString(s))
	}
	for pi, p := range panels {
		top := float64(firstPanel + pi*(panelH+panelGap))
		bottom := top + panelH
		ymax := 0.0
		for _, l := range p.lines {
			for _, y := range l.ys {
				if !math.IsNaN(y) {
					ymax = max(ymax, y)
				}
			}
		}
		ystep := niceStep(ymax*1.15, 5)
		ytop := math.Max(ystep, math.Ceil(ymax*1.15/ystep)*ystep)
		ypos := func(v float64) float64 { return bottom - v/ytop*panelH }
		for v := 0.0; v <= ytop+ystep/2; v += ystep {
			y := ypos(v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e0e0e0"/>`+"\n", marginL, y, marginL+plotWidth, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n", marginL-6, y+4, tick(v, ystep))
		}
		for _, v := range xticks {
			x := xpos(v)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`+"\n", x, bottom, x, bottom+4)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", x, bottom+16, tick(v, 1))
		}
		for _, m := range marks {
			x := xpos(m.x)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#b8860b" stroke-dasharray="4 3"/>`+"\n", x, top, x, bottom)
			if pi == 0 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#8b6508" font-size="11" text-anchor="middle">%s</text>`+"\n", x, top-4, html.EscapeString(m.label))
			}
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#444"/>`+"\n", marginL, top, plotWidth, panelH)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-weight="bold">%s</text>`+"\n", marginL+6, top+15, html.EscapeString(p.title))
		if pi == len(panels)-1 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="#444">%s</text>`+"\n", marginL+plotWidth/2, bottom+34, html.EscapeString(xlabel))
		}
		for _, l := range p.lines {
			var pts []string
			for i, y := range l.ys {
				if !math.IsNaN(y) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xpos(l.xs[i]), ypos(y)))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`+"\n", l.color, strings.Join(pts, " "))
			if logX {
				for _, pt := range pts {
					xy := strings.Split(pt, ",")
					fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`+"\n", xy[0], xy[1], l.color)
				}
			}
		}
		lx := marginL + plotWidth + 12
		for li, l := range p.lines {
			ly := top + 12 + float64(li)*15
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", lx, ly-4, lx+18, ly-4, l.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", lx+22, ly, html.EscapeString(l.label))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

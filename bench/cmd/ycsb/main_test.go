package main

import (
	"encoding/xml"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestZipfianIsSkewedAndInRange(t *testing.T) {
	const n, draws = 10000, 200000
	z := newZipfian(n)
	r := rand.New(rand.NewPCG(1, 2))
	count := map[int]int{}
	for range draws {
		k := z.next(r)
		if k < 0 || k >= n {
			t.Fatalf("key %d out of [0, %d)", k, n)
		}
		count[k]++
	}
	top := 0
	for _, c := range count {
		top = max(top, c)
	}
	// Rank 0 of a zipfian(0.99) over 10,000 items draws about 10% of the
	// time; a uniform choice would give each key 0.01%.
	if top < draws/20 {
		t.Fatalf("most frequent key drawn %d times of %d: not skewed", top, draws)
	}
	if len(count) < n/4 {
		t.Fatalf("only %d distinct keys of %d", len(count), n)
	}
}

func TestChartIsWellFormedSVG(t *testing.T) {
	svg := chart("t <&>", "sub\nline 2", "x", true, []panel{{"p", []series{{"a", "#000", []float64{1, 4, 16}, []float64{1, 2, 3}}}}}, []mark{{2, "m"}})
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("invalid SVG: %v", err)
		}
	}
}

// The kill report compares the worst second from the kill on with the
// p99 of every request before it.
func TestKillReportComparesTheWorstSecondWithTheSteadyP99(t *testing.T) {
	tl := &timeline{size: 100, clients: 16, seconds: 4, killAt: 2 * time.Second, total: &phase{}}
	for _, lat := range []time.Duration{10, 10, 35, 12} { // ms of every request that second
		var x second
		for range 100 {
			x.lat.Record(lat * time.Millisecond)
		}
		x.ok = 100
		tl.total.perSec = append(tl.total.perSec, x)
	}
	r := &results{kill: tl}
	var b strings.Builder
	r.killReport(&b)
	want := "the worst second from the kill on: 35"
	if !strings.Contains(b.String(), want) || !strings.Contains(b.String(), "(second 2)") {
		t.Fatalf("report lacks %q (second 2):\n%s", want, b.String())
	}
	if !strings.Contains(b.String(), "**3.") {
		t.Fatalf("report lacks the ratio of about 3.5×:\n%s", b.String())
	}
}

package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"100MB": 100e6, "1GB": 1e9, "512MiB": 512 << 20, "1GiB": 1 << 30, "64KB": 64e3, "2KiB": 2048, "1000": 1000, "10B": 10,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "-1GB", "1TB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

func TestKeyIndex(t *testing.T) {
	if i, ok := keyIndex([]byte(key(12345)), 20000); !ok || i != 12345 {
		t.Fatalf("keyIndex(key(12345)) = %d, %v", i, ok)
	}
	for _, k := range []string{key(20000), "key:-000000001", "other", "key:00000000x1"} {
		if _, ok := keyIndex([]byte(k), 20000); ok {
			t.Errorf("keyIndex(%q) accepted", k)
		}
	}
}

// The plot is well-formed XML and the phases split the seconds as said.
func TestReportOutputs(t *testing.T) {
	r := &report{started: time.Now(), keys: 10, logical: 1000, loadEnded: 9500 * time.Millisecond,
		series: make([]second, 10)}
	r.tl.launched, r.tl.streaming, r.tl.normal = 3200*time.Millisecond, 3800*time.Millisecond, 6100*time.Millisecond
	r.afterFrom = 6900 * time.Millisecond
	r.drops = map[string]*dropInfo{"n1": {seen: 6400 * time.Millisecond, done: 6800 * time.Millisecond}}
	r.tl.received = []receivedSample{{3300 * time.Millisecond, 0}, {4500 * time.Millisecond, 5 << 20}, {5200 * time.Millisecond, 7 << 20}}
	for i := range r.series {
		for j := range 10 + i {
			r.series[i].get.Record(time.Duration(j) * time.Millisecond)
			r.series[i].set.Record(time.Duration(2*j) * time.Millisecond)
		}
	}
	r.fillReceived()
	if r.series[4].received != 5<<20 || r.series[5].received != 2<<20 {
		t.Errorf("received per second: %v, %v", r.series[4].received, r.series[5].received)
	}
	ph := r.phases()
	if len(ph) != 3 || ph[0].secs != 3 || ph[1].secs != 2 || ph[2].secs != 2 || ph[2].name != "after (4 nodes)" {
		t.Fatalf("phases: %+v", ph)
	}
	d := xml.NewDecoder(strings.NewReader(r.svg()))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("svg: %v", err)
		}
	}
	if lines := strings.Count(r.csv(), "\n"); lines != 11 {
		t.Errorf("csv: %d lines", lines)
	}
}

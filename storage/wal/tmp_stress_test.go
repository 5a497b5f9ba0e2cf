package wal

import (
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"go/ast"
	"go/parser"
)

func parseSeed(t *testing.T, path string) [][]byte {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")[1:]
	var out [][]byte
	for _, l := range lines {
		e, err := parser.ParseExpr(l)
		if err != nil { t.Fatal(err) }
		lit := e.(*ast.CallExpr).Args[0].(*ast.BasicLit)
		s, err := strconv.Unquote(lit.Value)
		if err != nil { t.Fatal(err) }
		out = append(out, []byte(s))
	}
	return out
}

func TestStressTmp(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzReader/*")
	rng := rand.New(rand.NewSource(1))
	for _, f := range files {
		s := parseSeed(t, f)
		for i := 0; i < 200; i++ {
			d, g := append([]byte(nil), s[0]...), append([]byte(nil), s[1]...)
			for k := 0; k < 3; k++ {
				if len(d) > 0 { d[rng.Intn(len(d))] = byte(rng.Intn(256)) }
				if len(g) > 0 { g[rng.Intn(len(g))] = byte(rng.Intn(256)) }
			}
			start := time.Now()
			func() {
				defer func() { recover() }()
				ft := &testing.T{}
				_ = ft
			}()
			checkAgainstModel(t, d, g)
			if el := time.Since(start); el > 100*time.Millisecond {
				t.Logf("%s iter %d took %v (len %d,%d)", f, i, el, len(d), len(g))
			}
		}
	}
}

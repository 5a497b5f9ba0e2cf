package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDashboard loads the dashboard (/ui) of a real three-node cluster in
// headless Chromium, checks that it draws the ring (one arc per partition)
// and charts every node's load, kills -9 one node and waits until the page,
// still open and polling, shows it down. It saves screenshots of the page
// before and after the kill in $RINGKV_TEST_ARTIFACTS (else a temporary
// directory) and fails on a Content-Security-Policy violation or a script
// error. It skips, saying so, where chromium is not installed.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and a browser; skipped with -short")
	}
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("chromium (or chromium-browser) is not in PATH: skipping the dashboard test (Debian: apt-get install chromium)")
	}
	artifacts := os.Getenv("RINGKV_TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	nodes := startCluster(t)
	hc := &http.Client{Timeout: 2 * time.Second}
	var cs struct {
		Partitions int `json:"partitions"`
	}
	if err := getJSON(hc, "http://"+nodes[0].http+"/v1/cluster", &cs); err != nil || cs.Partitions <= 0 {
		t.Fatalf("GET /v1/cluster: %v (%d partitions)", err, cs.Partitions)
	}
	for i := 0; i < 20; i++ {
		if err := httpPut(hc, nodes[i%3].http, fmt.Sprintf("ui-key-%d", i), "v"); err != nil {
			t.Fatalf("PUT ui-key-%d: %v", i, err)
		}
	}
	// A light load on every node for the charts, until the test ends
	// (the killed node's requests fail, which is fine).
	stop := make(chan struct{})
	var loadWG sync.WaitGroup
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		c := &http.Client{Timeout: 500 * time.Millisecond}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			url := "http://" + nodes[i%3].http + fmt.Sprintf("/v1/kv/ui-key-%d", i%20)
			var resp *http.Response
			var err error
			if i%4 == 0 { // some writes too: hints for the node that dies
				var req *http.Request
				if req, err = http.NewRequest(http.MethodPut, url, strings.NewReader(fmt.Sprint(i))); err == nil {
					resp, err = c.Do(req)
				}
			} else {
				resp, err = c.Get(url)
			}
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	defer loadWG.Wait()
	defer close(stop)

	b := startBrowser(t, browser)
	b.call(t, "Page.navigate", map[string]any{"url": "http://" + nodes[0].http + "/ui"}, nil)

	// All three members up, the ring drawn, load charted for every node.
	var st dashState
	b.waitPage(t, 30*time.Second, "the page shows three members up, the ring and load points for each node", &st, func(st *dashState) bool {
		if len(st.Rows) != 3 || st.Arcs != cs.Partitions || st.Conn != "true" {
			return false
		}
		for _, r := range st.Rows {
			if r.Alive != "true" || r.Liveness != "up" || r.Label != "up" {
				return false
			}
		}
		return st.seriesOK(st.RPS, 3) && st.seriesOK(st.P99, 3) && st.anyBusy()
	})
	t.Logf("before the kill: %d updates, %d arcs, rps series %+v", st.Updates, st.Arcs, st.RPS)
	b.screenshot(t, filepath.Join(artifacts, "dashboard-healthy.png"))

	// kill -9 n3; the open page must show it down on its own.
	before := st.Updates
	victim := nodes[2]
	victim.kill()
	killed := time.Now()
	b.waitPage(t, 30*time.Second, "the page shows "+victim.id+" down", &st, func(st *dashState) bool {
		if len(st.Rows) != 3 || st.Updates <= before {
			return false
		}
		for _, r := range st.Rows {
			down := r.Alive == "false" && r.Liveness == "down" && r.Label == "down" && strings.Contains(" "+r.Class+" ", " down ")
			up := r.Alive == "true" && r.Label == "up"
			if r.ID == victim.id && !down || r.ID != victim.id && !up {
				return false
			}
		}
		return st.DownArcs[victim.id] > 0 && st.DownArcs[victim.id] == st.OwnedArcs[victim.id]
	})
	t.Logf("the page showed %s down %v after the kill (%d updates, %d of its arcs dimmed)",
		victim.id, time.Since(killed).Round(100*time.Millisecond), st.Updates, st.DownArcs[victim.id])
	// The charts keep their points for the node that died.
	if !st.seriesOK(st.RPS, 3) {
		t.Errorf("the rps chart lost a node's series after the kill: %+v", st.RPS)
	}
	b.screenshot(t, filepath.Join(artifacts, "dashboard.png"))

	for _, m := range b.messages() {
		if strings.Contains(m, "Content Security Policy") || strings.HasPrefix(m, "exception:") {
			t.Errorf("browser: %s", m)
		}
	}
	if t.Failed() {
		for _, m := range b.messages() {
			t.Logf("browser: %s", m)
		}
	}
}

// dashState is what the test reads of the page.
type dashState struct {
	Updates int    `json:"updates"`
	Conn    string `json:"conn"`
	Arcs    int    `json:"arcs"`
	Rows    []struct {
		ID       string `json:"id"`
		Alive    string `json:"alive"`
		Liveness string `json:"liveness"`
		Label    string `json:"label"`
		Class    string `json:"class"`
	} `json:"rows"`
	RPS       []dashSeries   `json:"rps"`
	P99       []dashSeries   `json:"p99"`
	OwnedArcs map[string]int `json:"owned"`
	DownArcs  map[string]int `json:"down"`
}

type dashSeries struct {
	ID     string `json:"id"`
	Points int    `json:"points"`
	Last   string `json:"last"`
}

// seriesOK reports whether the chart has a series for each of n nodes
// with at least two points.
func (st *dashState) seriesOK(series []dashSeries, n int) bool {
	ok := 0
	for _, s := range series {
		if s.Points >= 2 {
			ok++
		}
	}
	return len(series) == n && ok == n
}

// anyBusy reports whether some node's latest requests per second are
// above zero (the test's load shows in the chart).
func (st *dashState) anyBusy() bool {
	for _, s := range st.RPS {
		if s.Last != "" && s.Last != "0" {
			return true
		}
	}
	return false
}

const dashStateJS = `(() => {
  const rows = [...document.querySelectorAll('#members-body tr[data-node]')].map((r) => ({
    id: r.dataset.node, alive: r.dataset.alive, liveness: r.dataset.liveness, class: r.className,
    label: ((r.querySelector('.liveness') || {}).textContent || '').trim(),
  }));
  const series = (id) => [...document.querySelectorAll('#' + id + ' path.series')].map((p) => ({
    id: p.dataset.node, points: Number(p.dataset.points), last: p.dataset.last,
  }));
  const owned = {}, down = {};
  for (const p of document.querySelectorAll('#ring-svg path[data-p]')) {
    const o = p.dataset.owner;
    owned[o] = (owned[o] || 0) + 1;
    if (p.classList.contains('down')) down[o] = (down[o] || 0) + 1;
  }
  return JSON.stringify({
    updates: Number(document.body.dataset.updates || 0),
    conn: document.getElementById('conn').dataset.ok,
    arcs: document.querySelectorAll('#ring-svg path[data-p]').length,
    rows, rps: series('chart-rps'), p99: series('chart-p99'), owned, down,
  });
})()`

func getJSON(hc *http.Client, url string, v any) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func httpPut(hc *http.Client, addr, key, value string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// browser is headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: JSON messages ending in a NUL byte, the
// browser reading on its fd 3 and writing on its fd 4), attached to one
// page. No WebSocket and no dependency needed.
type browser struct {
	cmd     *exec.Cmd
	w       *os.File
	session string

	mu      sync.Mutex
	nextID  int
	pending map[int]chan cdpMessage
	msgs    []string // console errors, exceptions and log entries
	closed  error
	stderr  *bytes.Buffer
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// lockedBuffer keeps the tail of the browser's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 64<<10 {
		l.b.Write(p)
	}
	return len(p), nil
}

func startBrowser(t *testing.T, path string) *browser {
	t.Helper()
	toR, toW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path,
		"--headless=new", "--no-sandbox", "--disable-gpu", // we run as root: no sandbox
		"--remote-debugging-pipe",
		"--user-data-dir="+t.TempDir(),
		"--window-size=1400,1000", "--hide-scrollbars", "--mute-audio",
		"--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
		"--disable-background-networking", "--disable-dev-shm-usage", "--disable-component-update",
		// Keep the page's timers running at full speed in the background.
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding",
		"--disable-backgrounding-occluded-windows",
		"about:blank")
	cmd.ExtraFiles = []*os.File{toR, fromW} // fd 3: it reads; fd 4: it writes
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{b: &bytes.Buffer{}}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	toR.Close()
	fromW.Close()
	b := &browser{cmd: cmd, w: toW, pending: map[int]chan cdpMessage{}, stderr: out.b}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// Ask politely, then kill the whole process group (the browser,
		// its renderers and helpers) and reap it.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		b.callCtx(ctx, "", "Browser.close", nil, nil)
		cancel()
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("chromium (pid %d) did not exit", cmd.Process.Pid)
		}
		toW.Close()
		fromR.Close()
		if t.Failed() {
			out.mu.Lock()
			s := out.b.String()
			out.mu.Unlock()
			if len(s) > 4000 {
				s = "..." + s[len(s)-4000:]
			}
			t.Logf("--- chromium output ---\n%s", s)
		}
	})
	go b.read(fromR)

	var target struct {
		TargetID string `json:"targetId"`
	}
	b.call(t, "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	b.callSession(t, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	b.session = att.SessionID
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable"} {
		b.call(t, m, nil, nil)
	}
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}, nil)
	return b
}

// read dispatches the browser's messages until the pipe closes.
func (b *browser) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	var err error
	for {
		var line []byte
		line, err = br.ReadBytes(0)
		if err != nil {
			break
		}
		var m cdpMessage
		if json.Unmarshal(line[:len(line)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch := b.pending[m.ID]; ch != nil {
				delete(b.pending, m.ID)
				ch <- m
			}
		} else if s := describeEvent(m); s != "" && len(b.msgs) < 200 {
			b.msgs = append(b.msgs, s)
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.closed = fmt.Errorf("the browser closed its pipe: %v", err)
	for id, ch := range b.pending {
		delete(b.pending, id)
		close(ch)
	}
	b.mu.Unlock()
}

// describeEvent renders the events worth reporting: script exceptions,
// console errors and warnings, and browser log entries (CSP violations,
// failed loads).
func describeEvent(m cdpMessage) string {
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(m.Params, &p)
		return "exception: " + p.ExceptionDetails.Text + " " + p.ExceptionDetails.Exception.Description
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(m.Params, &p)
		if p.Type != "error" && p.Type != "warning" {
			return ""
		}
		var parts []string
		for _, a := range p.Args {
			parts = append(parts, fmt.Sprint(a.Value, a.Description))
		}
		return "console." + p.Type + ": " + strings.Join(parts, " ")
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Level, Source, Text, URL string
			} `json:"entry"`
		}
		json.Unmarshal(m.Params, &p)
		return "log " + p.Entry.Level + " (" + p.Entry.Source + "): " + p.Entry.Text + " " + p.Entry.URL
	}
	return ""
}

func (b *browser) messages() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.msgs...)
}

func (b *browser) callCtx(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	if b.closed != nil {
		b.mu.Unlock()
		return b.closed
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := b.w.Write(append(data, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: the browser went away", method)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

func (b *browser) callSession(t *testing.T, session, method string, params, result any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.callCtx(ctx, session, method, params, result); err != nil {
		t.Fatal(err)
	}
}

// call calls method on the page (on the browser before attaching).
func (b *browser) call(t *testing.T, method string, params, result any) {
	t.Helper()
	b.callSession(t, b.session, method, params, result)
}

// eval evaluates a JavaScript expression that returns a JSON string and
// decodes it into v.
func (b *browser) eval(expr string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res struct {
		Result struct {
			Type  string `json:"type"`
			Value any    `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.callCtx(ctx, b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return errors.New("evaluate: " + res.ExceptionDetails.Text)
	}
	s, ok := res.Result.Value.(string)
	if !ok {
		return fmt.Errorf("evaluate: a %s, not a string", res.Result.Type)
	}
	return json.Unmarshal([]byte(s), v)
}

// waitPage reads the page's state every 250ms until cond holds, at most
// for d (and 4*d/time.Second+1 reads), and fails with the last state if
// it never does.
func (b *browser) waitPage(t *testing.T, d time.Duration, what string, st *dashState, cond func(*dashState) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	var lastErr error
	for i := 0; i <= int(4*d/time.Second) && time.Now().Before(deadline); i++ {
		*st = dashState{}
		if lastErr = b.eval(dashStateJS, st); lastErr == nil && cond(st) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	js, _ := json.Marshal(st)
	for _, m := range b.messages() {
		t.Logf("browser: %s", m)
	}
	t.Fatalf("timed out after %v waiting: %s\nlast page state: %s\nlast error: %v", d, what, js, lastErr)
}

// screenshot saves a PNG of the whole page.
func (b *browser) screenshot(t *testing.T, path string) {
	t.Helper()
	var height int
	if err := b.eval(`JSON.stringify(document.documentElement.scrollHeight)`, &height); err != nil {
		t.Fatal(err)
	}
	height = min(max(height, 600), 6000)
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1400, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	var shot struct {
		Data string `json:"data"`
	}
	b.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot: not a PNG (%v)", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot (%d bytes): %s", len(png), path)
}

package faults

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// The HTTP client operations the real-process tiers (internal/e2e,
// internal/dockerfaults) record in a History.

// NetOutcome classifies a request's error over the network: only a
// connection that could not be made proves the request was not sent.
func NetOutcome(err error) Outcome {
	if err == nil {
		return OK
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return Fail
	}
	return Info
}

// HTTPGet reads key at level r from the node at addr: the live siblings'
// values and the context token (a 404 of a deleted key carries one too).
func HTTPGet(hc *http.Client, addr, key, r string) (ReadResult, string, error) {
	resp, err := hc.Get("http://" + addr + "/v1/kv/" + key + "?r=" + r)
	if err != nil {
		return ReadResult{}, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return ReadResult{}, "", err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var rr httpapi.ReadResponse
		if err := json.Unmarshal(body, &rr); err != nil {
			return ReadResult{}, "", fmt.Errorf("decode %s: %w", body, err)
		}
		res := ReadResult{Exists: true, Tombstones: -1}
		for _, s := range rr.Siblings {
			res.Values = append(res.Values, string(s.Value))
		}
		sort.Strings(res.Values)
		return res, rr.Context, nil
	case http.StatusNotFound:
		var er httpapi.ErrorResponse
		if err := json.Unmarshal(body, &er); err != nil {
			return ReadResult{}, "", fmt.Errorf("decode %s: %w", body, err)
		}
		return ReadResult{Exists: er.Context != "", Tombstones: -1}, er.Context, nil
	}
	return ReadResult{}, "", fmt.Errorf("GET %s: %d %s", key, resp.StatusCode, bytes.TrimSpace(body))
}

// HTTPPut writes value under key at level w on the node at addr, with the
// context token tok ("" for a blind write).
func HTTPPut(hc *http.Client, addr, key string, value []byte, tok, w string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/kv/"+key+"?w="+w, bytes.NewReader(value))
	if err != nil {
		return err
	}
	if tok != "" {
		req.Header.Set(httpapi.HeaderContext, tok)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("PUT %s: %d %s", key, resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

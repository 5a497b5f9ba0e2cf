package client

import "testing"

func TestKVPathCarriesTheLevelsThatAreSet(t *testing.T) {
	for _, c := range []struct {
		params []string
		want   string
	}{
		{[]string{"r", "", "pr", ""}, "/v1/kv/k"},
		{[]string{"r", "1", "pr", ""}, "/v1/kv/k?r=1"},
		{[]string{"w", "", "pw", "QUORUM"}, "/v1/kv/k?pw=QUORUM"},
		{[]string{"w", " ALL ", "pw", "2"}, "/v1/kv/k?w=ALL&pw=2"},
		{[]string{"w", "LOCAL_QUORUM", "pw", ""}, "/v1/kv/k?w=LOCAL_QUORUM"},
		{[]string{"r", "each_quorum", "pr", "1"}, "/v1/kv/k?r=each_quorum&pr=1"},
	} {
		if got := kvPath([]byte("k"), c.params...); got != c.want {
			t.Fatalf("kvPath(%q) = %q, want %q", c.params, got, c.want)
		}
	}
}

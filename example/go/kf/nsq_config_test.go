package kf

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// The NSQ binding's pure parts, with expected values computed by the Python side
// (client/transport/_nsq_config.py, _nsq_sub.allot), the same as example/node/test/nsq.test.js.

func TestNsqURLReadsAsThePythonConfig(t *testing.T) {
	c, err := ParseNsqURL("nsq://a:4161,b:4161?prefix=p.&visibility_timeout_s=2&msg_timeout_s=3")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.LookupdHTTP, []string{"a:4161", "b:4161"}) || c.Prefix != "p." || c.MsgTimeout != 3*time.Second {
		t.Fatalf("%+v", c)
	}
	got := []time.Duration{c.MaxReqTimeout, c.LookupdPoll, c.Heartbeat, c.DialTimeout}
	if !reflect.DeepEqual(got, []time.Duration{time.Hour, 10 * time.Second, 30 * time.Second, 2 * time.Second}) {
		t.Fatalf("%v", got)
	}
	c, _ = ParseNsqURL("nsq://?nsqd=h:4150,[::1]:4150")
	if !reflect.DeepEqual(c.Nsqd, []NsqNode{{"h:4150", "h:4151"}, {"[::1]:4150", "[::1]:4151"}}) {
		t.Fatalf("%v", c.Nsqd)
	}
	c, _ = ParseNsqURL("nsq://l:1?block_ms=5&prefix=p&zz=1")
	if !reflect.DeepEqual(c.Unknown, []string{"block_ms", "zz"}) {
		t.Fatalf("unknown options: %v", c.Unknown)
	}
}

func TestNsqURLsOfAnotherFormAreRefused(t *testing.T) {
	for url, want := range map[string]string{
		"nsq://":                            "names no nsqlookupd",
		"nsq://user:pw@l:4161":              "must be nsq://lookupd:4161",
		"nsq://l:4161/topic":                "no user, path or fragment",
		"nsq://l":                           "lookupd address l must be HOST:PORT",
		"nsq://?nsqd=h:1,h:2&nsqd_http=h:3": "one HTTP address per nsqd",
		"nsq://l:1?msg_timeout_s=0.5":       "msg_timeout_s must be at least 1",
		"nsq://l:1?dial_timeout_s=soon":     "dial_timeout_s must be a number",
	} {
		if _, err := ParseNsqURL(url); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", url, err, want)
		}
	}
}

func TestSideTopicsAreThePythonOnes(t *testing.T) {
	r := strings.Repeat
	cases := [][4]string{
		{"orders", "audit", "dead", "orders.audit.dead"},
		{"a.b", "c.d", "dead", "a.b.c.d.dead"},
		{r("T", 30), r("C", 28), "dead", r("T", 30) + "." + r("C", 28) + ".dead"},
		{r("T", 30), r("C", 29), "dead", r("T", 30) + "." + r("C", 16) + ".cc21252d.dead"},
		{r("a", 40), r("b", 20), "replay", r("a", 30) + "." + r("b", 16) + ".e5dc8aae.replay"},
		{r("x", 64), "c", "dead", r("x", 30) + ".c.da986ac7.dead"},
		{"orders#ephemeral", "audit", "replay", "orders.audit.e1845518.replay"},
		{"kf.r.0123456789abcdef0123456789abcdef#ephemeral", "kubefuncs#ephemeral", "dead",
			"kf.r.0123456789abcdef012345678.kubefuncs.414bf4cc.dead"},
	}
	for _, c := range cases {
		if got := sideTopic(c[0], c[1], c[2]); got != c[3] {
			t.Errorf("sideTopic(%s, %s, %s) = %s, want %s", c[0], c[1], c[2], got, c[3])
		}
	}
}

func TestReplyAddressesOnlyOfTheOneForm(t *testing.T) {
	topic := "kf.r." + strings.Repeat("0a", 16) + "#ephemeral"
	if got, nsqd, ok := parseReplyAddress(topic + "@[::1]:4150"); !ok || got != topic || nsqd != "[::1]:4150" {
		t.Fatalf("%v %v %v", got, nsqd, ok)
	}
	for _, bad := range []string{topic, topic + "@nsqd", "kf:reply:" + strings.Repeat("0a", 16),
		"kf.r." + strings.Repeat("0A", 16) + "#ephemeral@h:1", "kf.r." + strings.Repeat("0a", 16) + "@h:1",
		"orders@h:1", topic + "\n@h:1"} {
		if _, _, ok := parseReplyAddress(bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestRdySharesAreThePythonAllot(t *testing.T) {
	tf := []bool{true, false, true, false}
	cases := []struct {
		held    []int
		limit   int
		offset  int
		primary []bool
		want    []int
	}{
		{[]int{0, 0}, 16, 0, []bool{true, false}, []int{8, 8}},
		{[]int{0, 0, 0, 0}, 1, 0, tf, []int{1, 0, 0, 0}},
		{[]int{0, 0, 0, 0}, 1, 1, tf, []int{0, 0, 1, 0}},
		{[]int{0, 0, 0, 0}, 1, 3, tf, []int{0, 0, 0, 1}},
		{[]int{0, 0, 0, 0}, 3, 2, tf, []int{1, 1, 1, 0}},
		{[]int{2, 1, 0}, 4, 0, nil, []int{3, 1, 0}},
		{[]int{3, 2}, 4, 5, []bool{true, false}, []int{3, 2}},
		{[]int{0, 0, 0}, 5, 7, []bool{false, true, false}, []int{2, 1, 2}},
	}
	for _, c := range cases {
		if got := allot(c.held, c.limit, c.offset, c.primary); !reflect.DeepEqual(got, c.want) {
			t.Errorf("allot(%v, %d, %d) = %v, want %v", c.held, c.limit, c.offset, got, c.want)
		}
	}
}

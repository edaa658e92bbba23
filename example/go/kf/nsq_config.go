package kf

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The NSQ binding's pure parts (docs/protocol.md §11): the bus URL, NSQ names, reply
// addresses and the RDY shares. The same rules as client/transport/_nsq_config.py and
// example/node/nsq_config.js.

var (
	wireNameRule   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$|^[A-Za-z0-9._-]{1,54}#ephemeral$`)
	replyTopicRule = regexp.MustCompile(`^kf\.r\.[0-9a-f]{32}#ephemeral$`)
	nsqURLRule     = regexp.MustCompile(`^nsq://([^/?#@]*)/?(?:\?([^#]*))?$`)
	portRule       = regexp.MustCompile(`^[0-9]+$`)
)

// NsqNode is one nsqd: its TCP and HTTP addresses.
type NsqNode struct{ TCP, HTTP string }

// NsqConfig is a parsed nsq:// bus URL.
type NsqConfig struct {
	LookupdHTTP    []string
	Nsqd           []NsqNode
	Unknown        []string
	Prefix         string
	MsgTimeout     time.Duration // 0: nsqd's own
	MaxReqTimeout  time.Duration
	LookupdPoll    time.Duration
	Heartbeat      time.Duration
	OutputBufferMs int
	DialTimeout    time.Duration
}

// option -> default, minimum; seconds unless the name says otherwise
var nsqNumbers = map[string][2]float64{
	"max_req_timeout_s": {3600, 0}, "lookupd_poll_interval_s": {10, 0.05},
	"heartbeat_interval_s": {30, 1}, "output_buffer_timeout_ms": {25, 1}, "dial_timeout_s": {2, 0.05},
}

var nsqOptions = map[string]bool{"prefix": true, "nsqd": true, "nsqd_http": true,
	"msg_timeout_s": true, "visibility_timeout_s": true}

// ParseNsqURL reads nsq://lookupd:4161[,...]?options and/or nsq://?nsqd=host:4150[,...].
func ParseNsqURL(raw string) (*NsqConfig, error) {
	match := nsqURLRule.FindStringSubmatch(raw)
	if match == nil {
		return nil, fmt.Errorf("must be nsq://lookupd:4161[,lookupd:4161][?options] or nsq://?nsqd=host:4150[,...] "+
			"(no user, path or fragment), got %s", raw)
	}
	query, err := url.ParseQuery(match[2])
	if err != nil {
		return nil, fmt.Errorf("the query of %s: %v", raw, err)
	}
	opts := map[string]string{}
	c := &NsqConfig{}
	for key, values := range query {
		_, number := nsqNumbers[key]
		if !nsqOptions[key] && !number {
			c.Unknown = append(c.Unknown, key)
		} else if v := values[len(values)-1]; v != "" {
			opts[key] = v
		}
	}
	sort.Strings(c.Unknown)
	if c.LookupdHTTP, err = addresses(match[1], "lookupd address"); err != nil {
		return nil, err
	}
	if c.Nsqd, err = nsqdNodes(opts["nsqd"], opts["nsqd_http"]); err != nil {
		return nil, err
	}
	if len(c.LookupdHTTP) == 0 && len(c.Nsqd) == 0 {
		return nil, fmt.Errorf("%s names no nsqlookupd (nsq://host:4161) and no nsqd (?nsqd=)", raw)
	}
	c.Prefix = opts["prefix"]
	return c, c.numbers(opts)
}

func (c *NsqConfig) numbers(opts map[string]string) error {
	timeoutName := "visibility_timeout_s"
	if opts["msg_timeout_s"] != "" {
		timeoutName = "msg_timeout_s"
	}
	if raw := opts[timeoutName]; raw != "" {
		v, err := nsqNumber(timeoutName, raw, 1)
		if err != nil {
			return err
		}
		c.MsgTimeout = time.Duration(v*1000) * time.Millisecond
	}
	values := map[string]float64{}
	for key, spec := range nsqNumbers {
		raw := opts[key]
		if raw == "" {
			raw = strconv.FormatFloat(spec[0], 'f', -1, 64)
		}
		v, err := nsqNumber(key, raw, spec[1])
		if err != nil {
			return err
		}
		values[key] = v
	}
	sec := func(key string) time.Duration { return time.Duration(values[key] * float64(time.Second)) }
	c.MaxReqTimeout, c.LookupdPoll, c.DialTimeout = sec("max_req_timeout_s"), sec("lookupd_poll_interval_s"), sec("dial_timeout_s")
	c.Heartbeat = time.Duration(int(values["heartbeat_interval_s"])) * time.Second
	c.OutputBufferMs = int(values["output_buffer_timeout_ms"])
	return nil
}

func nsqNumber(name, raw string, minimum float64) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	if err != nil {
		return 0, fmt.Errorf("option %s must be a number, got '%s'", name, raw)
	}
	if v < minimum {
		return 0, fmt.Errorf("option %s must be at least %g, got '%s'", name, minimum, raw)
	}
	return v, nil
}

func addresses(raw, what string) ([]string, error) {
	var out []string
	for _, item := range strings.Split(raw, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		i := strings.LastIndex(item, ":")
		if i <= 0 || !portRule.MatchString(item[i+1:]) {
			return nil, fmt.Errorf("%s %s must be HOST:PORT", what, item)
		}
		out = append(out, item)
	}
	return out, nil
}

func nsqdNodes(tcpRaw, httpRaw string) ([]NsqNode, error) {
	tcp, err := addresses(tcpRaw, "nsqd address")
	if err != nil {
		return nil, err
	}
	httpAddrs, err := addresses(httpRaw, "nsqd_http address")
	if err != nil {
		return nil, err
	}
	if len(httpAddrs) > 0 && len(httpAddrs) != len(tcp) {
		return nil, fmt.Errorf("nsqd_http must list one HTTP address per nsqd address")
	}
	out := make([]NsqNode, len(tcp))
	for i, address := range tcp {
		out[i].TCP = address
		if len(httpAddrs) > 0 {
			out[i].HTTP = httpAddrs[i]
		} else { // nsqd's defaults: TCP 4150, HTTP 4151
			j := strings.LastIndex(address, ":")
			port, _ := strconv.Atoi(address[j+1:])
			out[i].HTTP = fmt.Sprintf("%s:%d", address[:j], port+1)
		}
	}
	return out, nil
}

// wireName is the NSQ name of a kubefuncs topic: the URL's prefix + the name.
func wireName(prefix, name string) (string, error) {
	wire := prefix + name
	if !wireNameRule.MatchString(wire) {
		return "", fmt.Errorf("'%s' is not a valid NSQ name (1-64 of [A-Za-z0-9._-])", wire)
	}
	return wire, nil
}

// sideTopic is the per-channel topic <topic>.<channel>.<kind> (dead or replay); when that
// breaks NSQ's 64-character rule, or the topic is ephemeral,
// <topic[:30]>.<channel[:16]>.<8 hex of sha1("<topic>/<channel>")>.<kind>.
func sideTopic(topic, channel, kind string) string {
	name := topic + "." + channel + "." + kind
	if utf8.RuneCountInString(name) <= 64 && !strings.Contains(name, "#") {
		return name
	}
	digest := sha1.Sum([]byte(topic + "/" + channel))
	cut := func(part string, limit int) string {
		runes := []rune(strings.ReplaceAll(part, "#ephemeral", ""))
		if len(runes) > limit {
			runes = runes[:limit]
		}
		return string(runes)
	}
	return fmt.Sprintf("%s.%s.%s.%s", cut(topic, 30), cut(channel, 16), hex.EncodeToString(digest[:])[:8], kind)
}

// parseReplyAddress splits kf.r.<32 hex>#ephemeral@<host:port>; ok is false for any
// other form.
func parseReplyAddress(address string) (topic, nsqd string, ok bool) {
	at := strings.LastIndex(address, "@")
	if at < 0 {
		return "", "", false
	}
	topic, nsqd = address[:at], address[at+1:]
	if !replyTopicRule.MatchString(topic) || !strings.Contains(nsqd, ":") {
		return "", "", false
	}
	return topic, nsqd, true
}

// allot is the RDY of each connection: its unsettled count plus a share of the free slots.
// Shares are equal; the remainder goes to primary connections first (the channel's topic
// before its replay topic; the other way round on every fourth offset), starting at
// offset within each group, so that rotating offset gives every connection its turn.
func allot(inFlight []int, limit, offset int, primary []bool) []int {
	count := len(inFlight)
	if count == 0 {
		return nil
	}
	held := 0
	for _, n := range inFlight {
		held += n
	}
	free := maxInt(0, limit-held)
	base, extra := free/count, free%count
	if primary == nil {
		primary = make([]bool, count)
		for i := range primary {
			primary[i] = true
		}
	}
	groups := [2][]int{}
	for i, p := range primary {
		if p {
			groups[0] = append(groups[0], i)
		} else {
			groups[1] = append(groups[1], i)
		}
	}
	if offset%4 == 3 {
		groups[0], groups[1] = groups[1], groups[0]
	}
	position := make([]int, count)
	start := 0
	for _, group := range groups {
		for rank, i := range group {
			position[i] = start + mod(rank-offset, len(group))
		}
		start += len(group)
	}
	out := make([]int, count)
	for i, n := range inFlight {
		out[i] = n + base
		if position[i] < extra {
			out[i]++
		}
	}
	return out
}

func mod(a, n int) int { return ((a % n) + n) % n }

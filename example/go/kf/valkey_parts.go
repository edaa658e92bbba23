package kf

// The Valkey binding's pure parts: the scripts, the bus URL, stream entries.

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/gomodule/redigo/redis"
)

const replyTTLMs = 60000

// The same scripts as the Python runtime (client/transport/_valkey_scripts.py).
//
// ENSURE_GROUP: the first group of a stream starts at 0 (nothing published before it is
// lost), later groups at $; a group the server lost starts at 0 (ARGV[2]).
var ensureGroup = redis.NewScript(1, `
local start = '$'
if ARGV[2] == '0' then
  start = '0'
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  start = '0'
elseif #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  start = '0'
end
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP') then
  return redis.error_reply(tostring(err))
end
return start
`)

// MOVE_DUE: due delayed entries ("<attempts>\n<nonce>\n<body>") back into their streams.
const moveDueSource = `
local moved = 0
local cut = tonumber(ARGV[3])
for i = 2, #KEYS do
  local zkey = KEYS[i]
  local stream = string.sub(zkey, cut + 1)
  local due = redis.call('ZRANGE', zkey, '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
  for _, member in ipairs(due) do
    local a = string.find(member, '\n', 1, true)
    local b = string.find(member, '\n', a + 1, true)
    redis.call('XADD', stream, '*', 'm', string.sub(member, b + 1), 'a', string.sub(member, 1, a - 1))
    redis.call('ZREM', zkey, member)
    moved = moved + 1
  end
  if redis.call('ZCARD', zkey) == 0 then redis.call('SREM', KEYS[1], zkey) end
end
return moved
`

// ValkeyOptions are the bus URL's parts: the address for the client library and the
// kubefuncs options of docs/protocol.md §10.
type ValkeyOptions struct {
	RedisURL   string
	Prefix     string
	Visibility time.Duration
	BlockMs    int
	ReadCount  int
}

// ParseValkeyURL reads valkey://[:password@]host:port/db?prefix=kf&visibility_timeout_s=30.
func ParseValkeyURL(raw string) (ValkeyOptions, error) {
	u, err := url.Parse(raw)
	schemes := map[string]string{"valkey": "redis", "redis": "redis", "valkeys": "rediss", "rediss": "rediss"}
	if err != nil || schemes[u.Scheme] == "" {
		return ValkeyOptions{}, fmt.Errorf("must be a valkey://, redis:// or nsq:// URL, got %s", raw)
	}
	q := u.Query()
	o := ValkeyOptions{Prefix: firstOf(q.Get("prefix"), "kf")}
	numbers := []struct {
		key      string
		fallback float64
		minimum  float64
		dst      *float64
	}{{"visibility_timeout_s", 30, 0.001, new(float64)}, {"block_ms", 2000, 0, new(float64)},
		{"read_count", 16, 1, new(float64)}}
	for _, n := range numbers {
		*n.dst = n.fallback
		if v := q.Get(n.key); v != "" {
			if *n.dst, err = strconv.ParseFloat(v, 64); err != nil || *n.dst < n.minimum {
				return o, fmt.Errorf("option %s must be a number >= %g, got '%s'", n.key, n.minimum, v)
			}
		}
	}
	o.Visibility = time.Duration(*numbers[0].dst * float64(time.Second))
	o.BlockMs, o.ReadCount = int(*numbers[1].dst), int(*numbers[2].dst)
	u.Scheme, u.RawQuery, u.Fragment = schemes[u.Scheme], "", ""
	o.RedisURL = u.String()
	return o, nil
}

var attemptRule = regexp.MustCompile(`^[0-9]{1,9}$`)

// entryMessage makes one message of a stream entry [id, [f1, v1, ...]]; nil for an entry
// without fields (deleted while pending). An entry kubefuncs did not write (no m, an
// attempt count that is not a small integer) is marked Malformed, to be dead-lettered.
func entryMessage(stream string, entry any, deliveries int) *Message {
	parts, _ := redis.Values(entry, nil)
	if len(parts) != 2 || parts[1] == nil {
		return nil
	}
	id, _ := redis.String(parts[0], nil)
	list, _ := redis.Values(parts[1], nil)
	if len(list) == 0 {
		return nil
	}
	f := map[string][]byte{}
	for i := 0; i+1 < len(list); i += 2 {
		key, _ := redis.String(list[i], nil)
		f[key], _ = redis.Bytes(list[i+1], nil)
	}
	m := &Message{Stream: stream, ID: id, Body: f["m"], Attempt: deliveries}
	a, present := f["a"]
	if !present {
		a = []byte("0")
	}
	if n, err := strconv.Atoi(string(a)); err == nil && attemptRule.Match(a) {
		m.Attempt += n
	} else {
		text := string(a)
		if len(text) > 40 {
			text = text[:40]
		}
		m.Malformed = fmt.Sprintf("attempt field %q is not an integer", text)
	}
	if _, ok := f["m"]; !ok {
		m.Body = []byte{}
		m.Malformed = "entry has no m field"
	}
	return m
}

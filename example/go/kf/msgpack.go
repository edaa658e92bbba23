// Package kf is a kubefuncs function runtime in Go: the wire envelope of docs/protocol.md,
// a Valkey streams binding, an NSQ binding (the TCP protocol, spoken directly) and the
// consumer loop around a handler. It reads the same KF_* settings as the Python runtime.
package kf

import (
	"bytes"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The decoding limits of docs/protocol.md ("Limits"), the same as client/wire.py's.
const (
	MaxBodyBytes = 64 * 1024 * 1024
	MaxDepth     = 64
	MaxElements  = 1000000
)

// Map is a msgpack map with string keys, in the order it was read (so that re-encoding
// gives the same bytes).
type Map struct {
	Keys   []string
	Values []any
}

// Get returns the value of key and whether it is there.
func (m *Map) Get(key string) (any, bool) {
	for i, k := range m.Keys {
		if k == key {
			return m.Values[i], true
		}
	}
	return nil, false
}

// Set replaces the value of key or appends it.
func (m *Map) Set(key string, value any) {
	for i, k := range m.Keys {
		if k == key {
			m.Values[i] = value
			return
		}
	}
	m.Keys = append(m.Keys, key)
	m.Values = append(m.Values, value)
}

// NewMap builds a Map from alternating keys and values.
func NewMap(pairs ...any) *Map {
	m := &Map{}
	for i := 0; i+1 < len(pairs); i += 2 {
		m.Set(pairs[i].(string), pairs[i+1])
	}
	return m
}

// DecodeError is a body that is not a v1 envelope (malformed: dead-lettered, never retried).
type DecodeError struct{ Msg string }

func (e *DecodeError) Error() string { return e.Msg }

// EncodeError is an envelope a consumer would refuse (over a limit).
type EncodeError struct{ Msg string }

func (e *EncodeError) Error() string { return e.Msg }

func decodeErr(format string, args ...any) error {
	return &DecodeError{fmt.Sprintf(format, args...)}
}

// reader walks one body with msgpack's low-level API and checks what the contract wants
// on top: UTF-8 strs, str map keys, no extension types, depth and element limits.
type reader struct {
	src      *bytes.Reader
	dec      *msgpack.Decoder
	elements int
	field    string // the envelope field being read, "" at the top
}

func decodeRaw(body []byte) (any, error) {
	src := bytes.NewReader(body)
	r := &reader{src: src, dec: msgpack.NewDecoder(src)}
	value, err := r.value(0)
	if err != nil {
		return nil, err
	}
	if src.Len() > 0 {
		return nil, decodeErr("body is not valid msgpack: %d trailing bytes after the envelope", src.Len())
	}
	return value, nil
}

func (r *reader) where(fallback string) string {
	if r.field == "" {
		return fallback
	}
	return fmt.Sprintf("envelope field '%s'", r.field)
}

func (r *reader) bad(err error) error {
	if _, ok := err.(*DecodeError); ok {
		return err
	}
	return decodeErr("body is not valid msgpack: %v", err)
}

func (r *reader) value(level int) (any, error) {
	c, err := r.dec.PeekCode()
	if err != nil {
		return nil, r.bad(err)
	}
	switch {
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		return r.mapValue(level)
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return r.array(level)
	case msgpcode.IsString(c):
		return r.str()
	case msgpcode.IsBin(c):
		b, err := r.dec.DecodeBytes()
		return b, r.wrap(err)
	case msgpcode.IsExt(c):
		return nil, r.ext()
	}
	return r.scalar(c)
}

func (r *reader) wrap(err error) error {
	if err != nil {
		return r.bad(err)
	}
	return nil
}

func (r *reader) scalar(c byte) (any, error) {
	switch {
	case c == msgpcode.Nil:
		return nil, r.wrap(r.dec.DecodeNil())
	case c == msgpcode.True || c == msgpcode.False:
		b, err := r.dec.DecodeBool()
		return b, r.wrap(err)
	case c == msgpcode.Double:
		f, err := r.dec.DecodeFloat64()
		return f, r.wrap(err)
	case c == msgpcode.Float:
		f, err := r.dec.DecodeFloat32()
		return f, r.wrap(err)
	case c == msgpcode.Uint64:
		u, err := r.dec.DecodeUint64()
		if err == nil && u <= math.MaxInt64 {
			return int64(u), nil
		}
		return u, r.wrap(err)
	case msgpcode.IsFixedNum(c) || (c >= msgpcode.Uint8 && c <= msgpcode.Int64):
		n, err := r.dec.DecodeInt64()
		return n, r.wrap(err)
	}
	return nil, decodeErr("body is not valid msgpack: unknown code 0x%02x", c)
}

func (r *reader) ext() error {
	// the code byte, then (for ext8/16/32) the length, then the type
	head := make([]byte, 6)
	n, _ := r.src.Read(head)
	head = head[:n]
	c := head[0]
	at := 1
	switch c {
	case msgpcode.Ext8:
		at = 2
	case msgpcode.Ext16:
		at = 3
	case msgpcode.Ext32:
		at = 5
	}
	if len(head) <= at {
		return decodeErr("body is not valid msgpack: truncated extension type")
	}
	return decodeErr("%s holds a msgpack extension type (ext %d): the contract has none",
		r.where("body"), int8(head[at]))
}

func (r *reader) str() (string, error) {
	s, err := r.dec.DecodeString()
	if err != nil {
		return "", r.bad(err)
	}
	if !utf8.ValidString(s) {
		return "", decodeErr("body is not valid msgpack: %s is not valid UTF-8", r.where("a string"))
	}
	return s, nil
}

func (r *reader) admit(level, elements int) error {
	if elements > 0 && level > MaxDepth {
		return decodeErr("%s is nested deeper than %d levels of maps and arrays", r.where("body"), MaxDepth)
	}
	r.elements += elements
	if r.elements > MaxElements {
		return decodeErr("body has more than %d elements (array items, map keys and values)", MaxElements)
	}
	if elements > r.src.Len() { // every element takes a byte at least
		return decodeErr("body is not valid msgpack: truncated (%d elements announced)", elements)
	}
	return nil
}

func (r *reader) array(level int) (any, error) {
	n, err := r.dec.DecodeArrayLen()
	if err != nil {
		return nil, r.bad(err)
	}
	if err := r.admit(level, n); err != nil {
		return nil, err
	}
	out := make([]any, 0, n)
	for i := 0; i < n; i++ {
		v, err := r.value(level + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (r *reader) mapValue(level int) (any, error) {
	n, err := r.dec.DecodeMapLen()
	if err != nil {
		return nil, r.bad(err)
	}
	if err := r.admit(level, 2*n); err != nil { // the envelope map is level 0
		return nil, err
	}
	out := &Map{Keys: make([]string, 0, n), Values: make([]any, 0, n)}
	for i := 0; i < n; i++ {
		key, err := r.key(level)
		if err != nil {
			return nil, err
		}
		if level == 0 {
			r.field = key
		}
		v, err := r.value(level + 1)
		if err != nil {
			return nil, err
		}
		out.Set(key, v)
	}
	if level == 0 {
		r.field = ""
	}
	return out, nil
}

func (r *reader) key(level int) (string, error) {
	c, err := r.dec.PeekCode()
	if err != nil {
		return "", r.bad(err)
	}
	if msgpcode.IsString(c) {
		return r.str()
	}
	where := ", in the envelope map"
	if level > 0 {
		where = ", in " + r.where("the envelope map")
	}
	return "", decodeErr("payload maps must have string keys (every map key in a message), got a key of type %s%s",
		typeOfCode(c), where)
}

func typeOfCode(c byte) string {
	switch {
	case c == msgpcode.Nil:
		return "nil"
	case c == msgpcode.True || c == msgpcode.False:
		return "bool"
	case c == msgpcode.Float || c == msgpcode.Double:
		return "float"
	case msgpcode.IsBin(c):
		return "bin"
	case msgpcode.IsExt(c):
		return "ext"
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		return "map"
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		return "array"
	}
	return "int"
}

// -- encoding ----------------------------------------------------------------------------

func encodeValue(enc *msgpack.Encoder, v any) error {
	switch x := v.(type) {
	case nil:
		return enc.EncodeNil()
	case bool:
		return enc.EncodeBool(x)
	case int:
		return enc.EncodeInt(int64(x))
	case int64:
		return enc.EncodeInt(x)
	case uint64:
		return enc.EncodeUint(x)
	case float64:
		return enc.EncodeFloat64(x)
	case float32:
		return enc.EncodeFloat32(x)
	case string:
		return enc.EncodeString(x)
	case []byte:
		return enc.EncodeBytes(x)
	case []any:
		return encodeArray(enc, x)
	case *Map:
		return encodeMap(enc, x)
	case map[string]string:
		return encodeStringMap(enc, x)
	}
	return &EncodeError{fmt.Sprintf("cannot encode a value of Go type %T", v)}
}

func encodeArray(enc *msgpack.Encoder, items []any) error {
	if err := enc.EncodeArrayLen(len(items)); err != nil {
		return err
	}
	for _, item := range items {
		if err := encodeValue(enc, item); err != nil {
			return err
		}
	}
	return nil
}

func encodeMap(enc *msgpack.Encoder, m *Map) error {
	if err := enc.EncodeMapLen(len(m.Keys)); err != nil {
		return err
	}
	for i, k := range m.Keys {
		if err := enc.EncodeString(k); err != nil {
			return err
		}
		if err := encodeValue(enc, m.Values[i]); err != nil {
			return err
		}
	}
	return nil
}

func encodeStringMap(enc *msgpack.Encoder, m map[string]string) error {
	keys := NewMap()
	for k, v := range m {
		keys.Set(k, v)
	}
	return encodeMap(enc, keys)
}

// tooDeepOrBig says what the decoder would refuse in one field's value, or "".
func tooDeepOrBig(value any) string {
	type node struct {
		v     any
		depth int
	}
	stack := []node{{value, 1}}
	elements := 0
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var children []any
		weight := 1
		switch x := n.v.(type) {
		case []any:
			children = x
		case *Map:
			children, weight = x.Values, 2
		}
		if len(children) == 0 {
			continue
		}
		if n.depth > MaxDepth {
			return fmt.Sprintf("is nested deeper than %d levels of maps and arrays", MaxDepth)
		}
		elements += weight * len(children)
		if elements > MaxElements {
			return fmt.Sprintf("has more than %d elements", MaxElements)
		}
		for _, c := range children {
			stack = append(stack, node{c, n.depth + 1})
		}
	}
	return ""
}

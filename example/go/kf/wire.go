package kf

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// MsgpackType is the default content type.
const MsgpackType = "application/msgpack"

// Envelope is one decoded message, defaults applied (docs/protocol.md §1). Time and
// Deadline hold an int64, or a uint64 beyond the int64 range; Deadline may be nil.
type Envelope struct {
	ID            string
	Topic         string
	Kind          string
	Time          any
	ContentType   string
	ReplyTo       *string
	CorrelationID *string
	Deadline      any
	Headers       *Map // string values
	Payload       any
}

// Decode checks a body against the contract and returns its envelope, or a *DecodeError.
func Decode(body []byte) (*Envelope, error) {
	if len(body) > MaxBodyBytes {
		return nil, decodeErr("message body is %d bytes, over the %d limit", len(body), MaxBodyBytes)
	}
	raw, err := decodeRaw(body)
	if err != nil {
		return nil, err
	}
	m, ok := raw.(*Map)
	if !ok {
		return nil, decodeErr("envelope must be a msgpack map, got %s", typeName(raw))
	}
	return fromWire(m)
}

func fromWire(m *Map) (*Envelope, error) {
	if v, _ := m.Get("v"); v != int64(1) {
		return nil, decodeErr("unsupported envelope version %s in field 'v': this consumer speaks v1 (the integer 1)",
			short(v))
	}
	env := &Envelope{}
	var err error
	steps := []func() error{
		func() error { env.ID, err = requiredStr(m, "id"); return err },
		func() error { env.Kind, err = requiredStr(m, "kind"); return err },
		func() error { env.Topic, err = optionalStr(m, "topic", ""); return err },
		func() error { env.ContentType, err = optionalStr(m, "content_type", MsgpackType); return err },
		func() error { env.ReplyTo, err = nilableStr(m, "reply_to"); return err },
		func() error { env.CorrelationID, err = nilableStr(m, "correlation_id"); return err },
		func() error { env.Time, err = intField(m, "time"); return err },
		func() error { env.Deadline, err = intField(m, "deadline"); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if env.Time == nil {
		env.Time = int64(0)
	}
	if env.Headers, err = strMap(get(m, "headers"), "headers"); err != nil {
		return nil, err
	}
	if env.Payload, err = payload(env.Kind, get(m, "payload")); err != nil {
		return nil, err
	}
	return env, nil
}

func get(m *Map, key string) any {
	v, _ := m.Get(key)
	return v
}

func requiredStr(m *Map, key string) (string, error) {
	v, ok := m.Get(key)
	if !ok || v == nil {
		return "", decodeErr("envelope field '%s' is missing", key)
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", decodeErr("envelope field '%s' must be a non-empty string, got %s", key, short(v))
	}
	return s, nil
}

func nilableStr(m *Map, key string) (*string, error) {
	v := get(m, key)
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, decodeErr("envelope field '%s' must be a string or nil, got %s", key, typeName(v))
	}
	return &s, nil
}

func optionalStr(m *Map, key, fallback string) (string, error) {
	s, err := nilableStr(m, key)
	if err != nil || s == nil || *s == "" {
		return fallback, err
	}
	return *s, nil
}

func intField(m *Map, key string) (any, error) {
	switch v := get(m, key).(type) {
	case nil:
		return nil, nil
	case int64, uint64:
		return v, nil
	default:
		return nil, decodeErr("envelope field '%s' must be an integer (unix ms) or nil, got %s", key, typeName(v))
	}
}

func strMap(v any, where string) (*Map, error) {
	if v == nil {
		return &Map{}, nil
	}
	m, ok := v.(*Map)
	if ok {
		for _, value := range m.Values {
			if _, ok = value.(string); !ok {
				break
			}
		}
	}
	if !ok {
		return nil, decodeErr("%s must be a map of string to string", where)
	}
	return m, nil
}

func bytesField(v any, where string) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return []byte{}, nil
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	}
	return nil, decodeErr("%s must be bytes or a string", where)
}

func payload(kind string, p any) (any, error) {
	decoders := map[string]func(*Map) (any, error){
		"http-request": httpRequest, "http-response": httpResponse, "error": errorInfo,
	}
	decode, structured := decoders[kind]
	if !structured {
		return p, nil
	}
	m, ok := p.(*Map)
	if !ok {
		return nil, decodeErr("payload of a '%s' message must be a map", kind)
	}
	return decode(m)
}

func httpRequest(p *Map) (any, error) {
	method, ok1 := get(p, "method").(string)
	path, ok2 := get(p, "path").(string)
	if !ok1 || !ok2 {
		return nil, decodeErr("http-request payload needs string 'method' and 'path'")
	}
	query := get(p, "query")
	if query == nil {
		query = ""
	}
	if _, ok := query.(string); !ok {
		return nil, decodeErr("http-request 'query' must be the raw query string")
	}
	headers, err := strMap(get(p, "headers"), "http-request headers")
	if err != nil {
		return nil, err
	}
	body, err := bytesField(get(p, "body"), "http-request body")
	if err != nil {
		return nil, err
	}
	return NewMap("method", method, "path", path, "query", query, "headers", headers, "body", body), nil
}

func httpResponse(p *Map) (any, error) {
	status, present := p.Get("status")
	if !present {
		status = int64(200)
	}
	code, ok := status.(int64)
	if !ok || code < 100 || code > 599 {
		return nil, decodeErr("http-response 'status' must be an integer 100-599, got %s", short(status))
	}
	headers, err := strMap(get(p, "headers"), "http-response headers")
	if err != nil {
		return nil, err
	}
	body, err := bytesField(get(p, "body"), "http-response body")
	if err != nil {
		return nil, err
	}
	return NewMap("status", code, "headers", headers, "body", body), nil
}

func errorInfo(p *Map) (any, error) {
	message, present := p.Get("message")
	if !present {
		message = ""
	}
	typ, ok1 := get(p, "type").(string)
	text, ok2 := message.(string)
	if !ok1 || !ok2 {
		return nil, decodeErr("error payload needs string 'type' and 'message'")
	}
	out := NewMap("type", typ, "message", text, "retryable", truthy(get(p, "retryable")))
	switch status := get(p, "status").(type) {
	case nil:
	case int64, uint64:
		out.Set("status", status)
	default:
		return nil, decodeErr("error 'status' must be an integer")
	}
	return out, nil
}

// truthy reads a value as Python's bool() does.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case uint64:
		return x != 0
	case float64:
		return x != 0
	case float32:
		return x != 0
	case string:
		return x != ""
	case []byte:
		return len(x) > 0
	case []any:
		return len(x) > 0
	case *Map:
		return len(x.Keys) > 0
	}
	return true
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "bool"
	case int64, uint64:
		return "int"
	case float64, float32:
		return "float"
	case string:
		return "str"
	case []byte:
		return "bin"
	case []any:
		return "array"
	case *Map:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// short is a value for an error message: never the whole of a big one.
func short(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 60 {
			x = x[:60]
		}
		return fmt.Sprintf("%q", x)
	case bool, int64, uint64, float64, float32:
		return fmt.Sprint(x)
	}
	return typeName(v)
}

// -- encoding ------------------------------------------------------------------------------

// Encode writes an envelope in the canonical key order, or returns an *EncodeError for one
// a consumer would refuse.
func Encode(env *Envelope) ([]byte, error) {
	headers := env.Headers
	if headers == nil {
		headers = &Map{}
	}
	for _, f := range []struct {
		name  string
		value any
	}{{"headers", headers}, {"payload", env.Payload}} {
		if problem := tooDeepOrBig(f.value); problem != "" {
			return nil, &EncodeError{fmt.Sprintf("cannot encode the envelope: envelope field '%s' %s", f.name, problem)}
		}
	}
	contentType := env.ContentType
	if contentType == "" {
		contentType = MsgpackType
	}
	timeMs := env.Time
	if timeMs == nil {
		timeMs = int64(0)
	}
	m := NewMap("v", int64(1), "id", env.ID, "topic", env.Topic, "kind", env.Kind, "time", timeMs,
		"content_type", contentType, "reply_to", strOrNil(env.ReplyTo),
		"correlation_id", strOrNil(env.CorrelationID), "deadline", env.Deadline,
		"headers", headers, "payload", env.Payload)
	var buf bytes.Buffer
	if err := encodeMap(msgpack.NewEncoder(&buf), m); err != nil {
		return nil, err
	}
	if buf.Len() > MaxBodyBytes {
		return nil, &EncodeError{fmt.Sprintf("cannot encode the envelope: its body would be %d bytes, over the %d limit",
			buf.Len(), MaxBodyBytes)}
	}
	return buf.Bytes(), nil
}

// EncodeMapValue encodes a Map on its own (NSQ's dead-letter map).
func EncodeMapValue(m *Map) ([]byte, error) {
	var buf bytes.Buffer
	err := encodeMap(msgpack.NewEncoder(&buf), m)
	return buf.Bytes(), err
}

func strOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

// NewID is 32 lowercase hex characters (128 random bits).
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NowMs is the unix time in milliseconds.
func NowMs() int64 { return time.Now().UnixMilli() }

// ReplyFor is the reply to request: addressed to its reply_to, correlated by its id,
// carrying only the W3C trace context headers.
func ReplyFor(request *Envelope, kind string, payload any) *Envelope {
	headers := &Map{}
	for _, key := range []string{"traceparent", "tracestate"} {
		if v, ok := request.Headers.Get(key); ok {
			headers.Set(key, v)
		}
	}
	id := request.ID
	return &Envelope{
		ID: NewID(), Topic: *request.ReplyTo, Kind: kind, Time: NowMs(), ContentType: MsgpackType,
		CorrelationID: &id, Headers: headers, Payload: payload,
	}
}

// Expired is true when the deadline has passed (strictly).
func Expired(env *Envelope, nowMs int64) bool {
	switch d := env.Deadline.(type) {
	case int64:
		return nowMs > d
	case uint64:
		return d < math.MaxInt64 && nowMs > int64(d)
	}
	return false
}

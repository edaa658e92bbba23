package kf

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

// The protocol's test vectors (tests/vectors/envelopes.json), checked by the Go decoder.
type vector struct {
	Name      string          `json:"name"`
	Valid     bool            `json:"valid"`
	Canonical bool            `json:"canonical"`
	Hex       string          `json:"hex"`
	Error     string          `json:"error"`
	Envelope  json.RawMessage `json:"envelope"`
}

func loadVectors(t *testing.T) []vector {
	data, err := os.ReadFile("../../../tests/vectors/envelopes.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []vector
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// toJSON is a value in the vectors' JSON form: bytes as {"$bin": "<base64>"}.
func toJSON(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]any{"$bin": base64.StdEncoding.EncodeToString(x)}
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = toJSON(item)
		}
		return out
	case *Map:
		out := map[string]any{}
		for i, k := range x.Keys {
			out[k] = toJSON(x.Values[i])
		}
		return out
	case float32:
		return float64(x)
	}
	return v
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = fromJSON(item)
		}
		return out
	case *orderedObject:
		if len(x.m.Keys) == 1 && x.m.Keys[0] == "$bin" {
			b, _ := base64.StdEncoding.DecodeString(x.m.Values[0].(string))
			return b
		}
		out := &Map{}
		for i, k := range x.m.Keys {
			out.Set(k, fromJSON(x.m.Values[i]))
		}
		return out
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		if !strings.ContainsAny(x.String(), ".eE") {
			var u uint64
			_ = json.Unmarshal([]byte(x.String()), &u)
			return u
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// orderedObject keeps a JSON object's key order (the canonical vectors depend on it).
type orderedObject struct{ m Map }

func parseOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '[' {
			out := []any{}
			for dec.More() {
				v, err := parseOrdered(dec)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
			_, err = dec.Token()
			return out, err
		}
		obj := &orderedObject{}
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := parseOrdered(dec)
			if err != nil {
				return nil, err
			}
			obj.m.Set(key.(string), v)
		}
		_, err = dec.Token()
		return obj, err
	}
	return tok, nil
}

func envelopeOf(t *testing.T, raw json.RawMessage) *Envelope {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	parsed, err := parseOrdered(dec)
	if err != nil {
		t.Fatal(err)
	}
	m := fromJSON(parsed).(*Map)
	env, err := fromWire(m)
	if err != nil {
		t.Fatalf("the vector's envelope does not decode: %v", err)
	}
	return env
}

func envelopeJSON(env *Envelope) any {
	return toJSON(NewMap("v", int64(1), "id", env.ID, "topic", env.Topic, "kind", env.Kind,
		"time", env.Time, "content_type", env.ContentType, "reply_to", strOrNil(env.ReplyTo),
		"correlation_id", strOrNil(env.CorrelationID), "deadline", env.Deadline,
		"headers", env.Headers, "payload", env.Payload))
}

// sameJSON compares through encoding/json, so that number types do not matter.
func sameJSON(t *testing.T, got any, want json.RawMessage) {
	var a, b any
	text, _ := json.Marshal(got)
	_ = json.Unmarshal(text, &a)
	_ = json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("got %s\nwant %s", text, want)
	}
}

func TestValidVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		if !v.Valid {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			body, _ := hex.DecodeString(v.Hex)
			env, err := Decode(body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			sameJSON(t, envelopeJSON(env), v.Envelope)
			again, err := Encode(envelopeOf(t, v.Envelope))
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			back, err := Decode(again)
			if err != nil {
				t.Fatalf("decode of the re-encoded: %v", err)
			}
			sameJSON(t, envelopeJSON(back), v.Envelope)
			if v.Canonical && hex.EncodeToString(again) != v.Hex {
				t.Fatalf("not canonical:\n got %x\nwant %s", again, v.Hex)
			}
		})
	}
}

func TestInvalidVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.Valid {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			body, _ := hex.DecodeString(v.Hex)
			_, err := Decode(body)
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("want a DecodeError, got %v", err)
			}
			if !strings.Contains(err.Error(), v.Error) {
				t.Fatalf("%q lacks %q", err.Error(), v.Error)
			}
		})
	}
}

func TestReplyForCorrelatesAndKeepsOnlyTraceContext(t *testing.T) {
	to := "kf:reply:abc"
	req := &Envelope{ID: "r1", Kind: "request", ReplyTo: &to,
		Headers: NewMap("traceparent", "00-a-b-01", "tracestate", "x=1", "other", "no")}
	reply := ReplyFor(req, "reply", "HI")
	if reply.Topic != to || *reply.CorrelationID != "r1" {
		t.Fatalf("reply not addressed/correlated: %+v", reply)
	}
	if !reflect.DeepEqual(reply.Headers.Keys, []string{"traceparent", "tracestate"}) {
		t.Fatalf("headers: %v", reply.Headers.Keys)
	}
}

func TestExpiredOnlyStrictlyAfterTheDeadline(t *testing.T) {
	cases := []struct {
		deadline any
		now      int64
		want     bool
	}{{nil, 1 << 50, false}, {int64(1000), 1000, false}, {int64(1000), 1001, true}, {uint64(1 << 63), 5, false}}
	for _, c := range cases {
		if got := Expired(&Envelope{Deadline: c.deadline}, c.now); got != c.want {
			t.Errorf("Expired(%v, %d) = %v", c.deadline, c.now, got)
		}
	}
}

func TestEncodeRefusesTooDeep(t *testing.T) {
	var deep any = "x"
	for i := 0; i < 70; i++ {
		deep = []any{deep}
	}
	_, err := Encode(&Envelope{ID: "a", Kind: "event", Payload: deep})
	if _, ok := err.(*EncodeError); !ok {
		t.Fatalf("want an EncodeError, got %v", err)
	}
}

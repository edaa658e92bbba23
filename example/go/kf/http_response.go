package kf

import "encoding/json"

// ToHTTPResponse maps a handler's return value to an http-response as the Python runtime
// does: a map with status as it is; nil -> 204; bytes, str -> 200; anything else -> JSON.
func ToHTTPResponse(result any) *Map {
	text := func(ct string, body []byte) *Map {
		return NewMap("status", int64(200), "headers", NewMap("content-type", ct), "body", body)
	}
	switch x := result.(type) {
	case *Map:
		if status, ok := x.Get("status"); ok {
			headers, _ := x.Get("headers")
			if headers == nil {
				headers = &Map{}
			}
			body, _ := x.Get("body")
			if body == nil {
				body = []byte{}
			}
			return NewMap("status", status, "headers", headers, "body", body)
		}
	case nil:
		return NewMap("status", int64(204), "headers", &Map{}, "body", []byte{})
	case []byte:
		return text("application/octet-stream", x)
	case string:
		return text("text/plain; charset=utf-8", []byte(x))
	}
	data, _ := json.Marshal(toPlain(result))
	return text("application/json", data)
}

func toPlain(v any) any {
	switch x := v.(type) {
	case *Map:
		out := map[string]any{}
		for i, k := range x.Keys {
			out[k] = toPlain(x.Values[i])
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = toPlain(item)
		}
		return out
	}
	return v
}

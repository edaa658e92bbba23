package main

import (
	"context"
	"reflect"
	"testing"

	"kubefuncs.example/gofn/kf"
)

func TestTheFunctionUpperCasesTextAndFailsOnAsk(t *testing.T) {
	ctx, c := context.Background(), &kf.Context{Kind: "request", Attempt: 2}
	if got, err := handle(ctx, "hello", c); got != "HELLO" || err != nil {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := handle(ctx, "fail", c); err == nil || err.Error() != "asked to fail" {
		t.Fatalf("%v", err)
	}
	if _, err := handle(ctx, int64(3), c); err == nil || err.(kf.TypedError).ErrorType() != "TypeError" {
		t.Fatalf("%v", err)
	}
}

func TestTheFunctionAnswersHTTPAndTheConformanceConventions(t *testing.T) {
	ctx := context.Background()
	request := kf.NewMap("method", "POST", "path", "/upper-go/", "body", []byte("shout"))
	got, _ := handle(ctx, request, &kf.Context{Kind: "http-request"})
	if body, _ := got.(*kf.Map).Get("body"); string(body.([]byte)) != "SHOUT" {
		t.Fatalf("%v", got)
	}
	echo := kf.NewMap("conformance", "echo", "value", "v", "sleep_ms", int64(1))
	got, _ = handle(ctx, echo, &kf.Context{Kind: "request", Attempt: 2})
	if !reflect.DeepEqual(got, kf.NewMap("value", "v", "attempt", int64(2))) {
		t.Fatalf("%v", got)
	}
	if _, err := handle(ctx, kf.NewMap("conformance", "fail"), &kf.Context{}); err == nil {
		t.Fatal("fail did not fail")
	}
}

func TestReturnValuesMapToHTTPAsInPython(t *testing.T) {
	status := func(v any) (any, any) {
		m := kf.ToHTTPResponse(v)
		s, _ := m.Get("status")
		h, _ := m.Get("headers")
		ct, _ := h.(*kf.Map).Get("content-type")
		return s, ct
	}
	cases := []struct {
		result        any
		status, type_ any
	}{
		{nil, int64(204), nil}, {"x", int64(200), "text/plain; charset=utf-8"},
		{[]byte{1}, int64(200), "application/octet-stream"}, {int64(1), int64(200), "application/json"},
		{kf.NewMap("status", int64(201)), int64(201), nil},
	}
	for _, c := range cases {
		if s, ct := status(c.result); s != c.status || ct != c.type_ {
			t.Errorf("%v -> %v %v", c.result, s, ct)
		}
	}
}

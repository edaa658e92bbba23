// A kubefuncs function in Go: serves one topic on Valkey or NSQ exactly as
// `python -m kubefuncs` does (docs/protocol.md, docs/other-languages.md). It upper-cases
// text, like the Node example (example/node/function.js).
//
//	KF_TOPIC=upper-go ./kubefuncs-go
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"kubefuncs.example/gofn/kf"
)

// handle is the work: upper-case text.
func handle(ctx context.Context, payload any, c *kf.Context) (any, error) {
	if m, ok := payload.(*kf.Map); ok {
		if _, ok := m.Get("conformance"); ok {
			return conformance(ctx, m, c)
		}
	}
	if c.Kind == "http-request" {
		return upperHTTP(payload.(*kf.Map))
	}
	text, ok := payload.(string)
	if !ok {
		return nil, kf.NewError("TypeError", "expected a string, got %T", payload)
	}
	if text == "fail" {
		return nil, errors.New("asked to fail")
	}
	return strings.ToUpper(text), nil
}

func upperHTTP(request *kf.Map) (any, error) {
	body, _ := request.Get("body")
	text := string(body.([]byte))
	if text == "fail" {
		return nil, errors.New("asked to fail")
	}
	headers := kf.NewMap("content-type", "text/plain; charset=utf-8")
	return kf.NewMap("status", int64(200), "headers", headers, "body", []byte(strings.ToUpper(text))), nil
}

// conformance follows the conventions `functl conformance` drives a function with
// (docs/protocol.md, Conformance).
func conformance(ctx context.Context, p *kf.Map, c *kf.Context) (any, error) {
	switch what, _ := p.Get("conformance"); what {
	case "fail":
		return nil, errors.New("conformance: asked to fail")
	case "echo":
	default:
		return nil, fmt.Errorf("unknown conformance %v", what)
	}
	if ms, ok := p.Get("sleep_ms"); ok {
		if d := millis(ms); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	value, _ := p.Get("value")
	return kf.NewMap("value", value, "attempt", int64(c.Attempt)), nil
}

func millis(v any) time.Duration {
	switch x := v.(type) {
	case int64:
		return time.Duration(x) * time.Millisecond
	case uint64:
		return time.Duration(x) * time.Millisecond
	case float64:
		return time.Duration(x * float64(time.Millisecond))
	}
	return 0
}

func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if i := strings.IndexByte(kv, '='); i > 0 {
			env[kv[:i]] = kv[i+1:]
		}
	}
	return env
}

func main() {
	settings, err := kf.SettingsFromEnv(environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubefuncs-go: %v\n", err)
		os.Exit(2)
	}
	log := kf.NewLogger(settings.LogLevel)
	runtime, err := kf.NewRuntime(settings, handle, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubefuncs-go: %v\n", err)
		os.Exit(2)
	}
	health, err := kf.ServeHealth(settings.HealthAddr, runtime)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubefuncs-go: %v\n", err)
		os.Exit(2)
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	stopped := make(chan struct{})
	go func() {
		<-signals
		runtime.Stop()
		close(stopped)
	}()
	if err := runtime.Run(); err != nil {
		log.Error("consume loop died: "+err.Error(), nil)
		os.Exit(1)
	}
	<-stopped
	if health != nil {
		_ = health.Close()
	}
	log.Info("stopped", nil)
}

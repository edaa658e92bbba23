package kf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Message is one delivery, on either bus.
type Message struct {
	Stream    string // Valkey: the stream it came from
	ID        string // Valkey entry id or NSQ message id
	Body      []byte
	Attempt   int
	Malformed string // an entry that is not one kubefuncs wrote: dead-lettered as it is

	link *nsqLink // NSQ: the connection it came on
	done bool     // NSQ: settled (guarded by the bus's lock)
}

// Bus is what the loop needs of a binding (bus_valkey.go, bus_nsq.go).
type Bus interface {
	EnsureGroups(stop <-chan struct{}) error
	Fetch(count int) ([]*Message, error)
	Ack(m *Message) error
	Retry(m *Message, delay time.Duration) error
	DeadLetter(m *Message, reason string) error
	Touch(m *Message) error
	Reply(address string, body []byte) error
	MoveDue() error
	Visibility() time.Duration
	Connected() bool
	StopReading()
	Close() error
}

// Undeliverable is a reply address that can never take a reply: the message is
// dead-lettered instead of retried.
type Undeliverable struct{ Err error }

func (e *Undeliverable) Error() string { return e.Err.Error() }

// Context is what a handler sees of its delivery.
type Context struct {
	ID      string
	Kind    string
	Attempt int
	Headers *Map
}

// Handler does the work; its return value is the reply when a caller waits.
type Handler func(ctx context.Context, payload any, c *Context) (any, error)

// TypedError lets an error name its type in error replies and dead-letter reasons
// (the Python runtime uses the exception class name); others are "Error".
type TypedError interface {
	error
	ErrorType() string
}

type namedError struct{ typ, msg string }

func (e *namedError) Error() string { return e.msg }

func (e *namedError) ErrorType() string { return e.typ }

// NewError is an error with a type name.
func NewError(typ, format string, args ...any) error {
	return &namedError{typ, fmt.Sprintf(format, args...)}
}

func errorType(err error) string {
	var typed TypedError
	if errors.As(err, &typed) {
		return typed.ErrorType()
	}
	return "Error"
}

var servedKinds = map[string]bool{"event": true, "request": true, "http-request": true}

// Runtime is the consume loop around a handler.
type Runtime struct {
	s        Settings
	handler  Handler
	bus      Bus
	log      *Logger
	inFlight int32
	freed    chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	work     sync.WaitGroup
	// consuming: the loop runs; died: the loop died (readiness goes with it)
	consuming, stopping, died atomic.Bool
}

// NewRuntime opens the binding of the bus URL's scheme: the one place that picks one.
func NewRuntime(s Settings, handler Handler, log *Logger) (*Runtime, error) {
	var bus Bus
	var err error
	if strings.HasPrefix(s.BusURL, "nsq://") {
		bus, err = NewNsqBus(s, log)
	} else {
		bus, err = NewValkeyBus(s, log)
	}
	if err != nil {
		return nil, err
	}
	return &Runtime{s: s, handler: handler, bus: bus, log: log,
		freed: make(chan struct{}, 1), stop: make(chan struct{})}, nil
}

// Run consumes until Stop; an error means the loop died.
func (rt *Runtime) Run() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("consume loop panicked: %v", r)
		}
		if err != nil {
			rt.died.Store(true)
		}
	}()
	if err := rt.bus.EnsureGroups(rt.stop); err != nil {
		return err
	}
	rt.consuming.Store(true)
	rt.log.Info(fmt.Sprintf("consuming %s as channel %s", rt.s.Topic, rt.s.Channel), nil)
	go rt.housekeeping()
	failures := 0
	for !rt.stopping.Load() {
		if !rt.waitForSlot() {
			break
		}
		free := rt.s.Concurrency - int(atomic.LoadInt32(&rt.inFlight))
		msgs, err := rt.bus.Fetch(free)
		if err != nil {
			if rt.stopping.Load() {
				break
			}
			failures++
			rt.log.Warn(fmt.Sprintf("reading failed (%v); retrying", err), nil)
			rt.pause(time.Duration(math.Min(10000, 100*math.Pow(2, float64(failures)))) * time.Millisecond)
			continue
		}
		failures = 0
		for _, m := range msgs {
			rt.start(m)
		}
	}
	return nil
}

func (rt *Runtime) waitForSlot() bool {
	for int(atomic.LoadInt32(&rt.inFlight)) >= rt.s.Concurrency {
		select {
		case <-rt.freed:
		case <-rt.stop:
			return false
		}
	}
	return true
}

func (rt *Runtime) pause(d time.Duration) {
	select {
	case <-time.After(d):
	case <-rt.stop:
	}
}

func (rt *Runtime) housekeeping() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-rt.stop:
			return
		case <-tick.C:
			_ = rt.bus.MoveDue()
		}
	}
}

func (rt *Runtime) start(m *Message) {
	atomic.AddInt32(&rt.inFlight, 1)
	rt.work.Add(1)
	go func() {
		defer func() {
			if r := recover(); r != nil { // a bug must not take the process down: redelivered
				rt.log.Error(fmt.Sprintf("handling failed: %v; the bus redelivers it", r), fields{"attempt": m.Attempt})
			}
			atomic.AddInt32(&rt.inFlight, -1)
			rt.work.Done()
			select {
			case rt.freed <- struct{}{}:
			default:
			}
		}()
		if err := rt.process(m); err != nil {
			rt.log.Error(fmt.Sprintf("could not settle; the bus redelivers it: %v", err), fields{"attempt": m.Attempt})
		}
	}()
}

type fields = map[string]any

// process handles one message: decode, skip if expired, run, reply, then ack (reply first:
// at-least-once).
func (rt *Runtime) process(m *Message) error {
	if m.Malformed != "" {
		rt.log.Warn("malformed entry dead-lettered: "+m.Malformed, fields{"attempt": m.Attempt})
		return rt.bus.DeadLetter(m, "malformed entry: "+m.Malformed)
	}
	env, err := Decode(m.Body)
	if err != nil {
		rt.log.Warn("malformed message dead-lettered: "+err.Error(), fields{"attempt": m.Attempt})
		return rt.bus.DeadLetter(m, "malformed: "+err.Error())
	}
	extra := fields{"message_id": env.ID, "attempt": m.Attempt}
	if Expired(env, NowMs()) {
		rt.log.Info("skipped: past its deadline", extra)
		return rt.bus.Ack(m)
	}
	if !servedKinds[env.Kind] {
		// never run: answer a waiting caller, then keep it as a dead letter
		failure := NewError("UnsupportedKind", "a function does not serve %s messages", env.Kind)
		rt.log.Warn("unsupported kind dead-lettered: "+env.Kind, extra)
		if waiting(env) {
			rt.replyError(env, failure)
		}
		return rt.bus.DeadLetter(m, "UnsupportedKind: "+failure.Error())
	}
	result, err := rt.invoke(env, m)
	if err == nil && waiting(env) {
		err = rt.reply(env, result)
	}
	var undeliverable *Undeliverable
	if errors.As(err, &undeliverable) {
		// the address can never take a reply: keep the message, do not run it again
		rt.log.Warn("reply undeliverable, dead-lettered: "+err.Error(), extra)
		return rt.bus.DeadLetter(m, "Undeliverable: "+err.Error())
	}
	if err != nil {
		return rt.failed(m, env, err, extra)
	}
	return rt.bus.Ack(m)
}

func waiting(env *Envelope) bool { return env.ReplyTo != nil && *env.ReplyTo != "" }

func (rt *Runtime) reply(env *Envelope, result any) error {
	reply := ReplyFor(env, "reply", result)
	if env.Kind == "http-request" {
		reply = ReplyFor(env, "http-response", ToHTTPResponse(result))
	}
	body, err := Encode(reply)
	if err != nil {
		return err
	}
	return rt.bus.Reply(*env.ReplyTo, body)
}

// invoke runs the handler within the time limit, touching the delivery while it runs.
func (rt *Runtime) invoke(env *Envelope, m *Message) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rt.s.Timeout)
	defer cancel()
	touch := time.NewTicker(rt.bus.Visibility() / 3)
	defer touch.Stop()
	type outcome struct {
		result any
		err    error
	}
	done := make(chan outcome, 1)
	c := &Context{ID: env.ID, Kind: env.Kind, Attempt: m.Attempt, Headers: env.Headers}
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- outcome{nil, NewError("Panic", "handler panicked: %v", r)}
			}
		}()
		result, err := rt.handler(ctx, env.Payload, c)
		done <- outcome{result, err}
	}()
	for {
		select {
		case o := <-done:
			return o.result, o.err
		case <-touch.C:
			_ = rt.bus.Touch(m)
		case <-ctx.Done():
			return nil, NewError("TimeoutError", "took longer than %gs", rt.s.Timeout.Seconds())
		}
	}
}

// failed: a waiting caller gets an error reply at once; otherwise retry with backoff;
// dead-letter after the last attempt.
func (rt *Runtime) failed(m *Message, env *Envelope, err error, extra fields) error {
	reason := errorType(err) + ": " + err.Error()
	waits := waiting(env) && !Expired(env, NowMs())
	rt.log.Warn("handler failed: "+reason, extra)
	if waits {
		rt.replyError(env, err)
	}
	if m.Attempt >= rt.s.MaxAttempts {
		return rt.bus.DeadLetter(m, reason)
	}
	if waits && rt.s.ReplyErrorsAtOnce {
		return rt.bus.Ack(m)
	}
	return rt.bus.Retry(m, Backoff(m.Attempt, rt.s.Backoff, rt.s.BackoffMax, rand.Float64()))
}

// Backoff is backoff * 2**(attempt-1), capped, minus up to 50 % jitter (random in [0, 1)).
func Backoff(attempt int, base, ceiling time.Duration, random float64) time.Duration {
	delay := math.Min(float64(ceiling), float64(base)*math.Pow(2, float64(attempt-1)))
	return time.Duration(delay * (1 - random*0.5))
}

func (rt *Runtime) replyError(env *Envelope, err error) {
	message := err.Error()
	if message == "" {
		message = errorType(err)
	}
	info := NewMap("type", errorType(err), "message", message, "retryable", false)
	if errorType(err) == "TimeoutError" {
		info.Set("status", int64(504))
	}
	body, encodeErr := Encode(ReplyFor(env, "error", info))
	if encodeErr == nil {
		encodeErr = rt.bus.Reply(*env.ReplyTo, body)
	}
	if encodeErr != nil {
		rt.log.Warn("could not send the error reply: "+encodeErr.Error(), fields{"message_id": env.ID})
	}
}

// Stop: stop taking messages, let in-flight work finish within the grace period. What is
// still unsettled then stays pending and is redelivered after the visibility timeout.
func (rt *Runtime) Stop() {
	rt.stopOnce.Do(func() {
		rt.stopping.Store(true)
		close(rt.stop)
		rt.bus.StopReading()
		rt.log.Info(fmt.Sprintf("draining %d in-flight message(s)", atomic.LoadInt32(&rt.inFlight)), nil)
		drained := make(chan struct{})
		go func() { rt.work.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(rt.s.Grace):
			rt.log.Warn("grace period over; unsettled messages are redelivered by the bus", nil)
		}
		_ = rt.bus.Close()
	})
}

// Ready: consuming, connected to the bus, not stopping, the loop alive.
func (rt *Runtime) Ready() bool {
	return rt.consuming.Load() && !rt.stopping.Load() && !rt.died.Load() && rt.bus.Connected()
}

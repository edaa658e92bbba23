package kf

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gomodule/redigo/redis"
)

// ValkeyBus is the Valkey binding: key names, the consumer group, reading, settling.
type ValkeyBus struct {
	ValkeyOptions
	channel, consumer     string
	streams               []string
	retryStream, dead     string
	pool                  *redis.Pool
	log                   *Logger
	readerMu              sync.Mutex
	reader                redis.Conn
	lastClaim             time.Time
	connected, closed     atomic.Bool
	reading               atomic.Bool
	dial                  func() (redis.Conn, error)
	moveDue               *redis.Script
	closedCh              chan struct{}
	closeOnce             sync.Once
	settleRetryMaxBackoff time.Duration
}

// NewValkeyBus prepares the binding (no connection yet).
func NewValkeyBus(s Settings, log *Logger) (*ValkeyBus, error) {
	o, err := ParseValkeyURL(s.BusURL)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	b := &ValkeyBus{
		ValkeyOptions: o, channel: s.Channel, log: log,
		consumer: fmt.Sprintf("go-%s-%d-%s", host, os.Getpid(), NewID()[:6]),
		streams:  []string{o.Prefix + ":topic:" + s.Topic, o.Prefix + ":retry:" + s.Topic + ":" + s.Channel},
		dead:     o.Prefix + ":dead:" + s.Topic + ":" + s.Channel,
		moveDue:  redis.NewScript(-1, moveDueSource), closedCh: make(chan struct{}),
		settleRetryMaxBackoff: 2 * time.Second,
	}
	b.retryStream = b.streams[1]
	b.reading.Store(true)
	options := []redis.DialOption{redis.DialConnectTimeout(2 * time.Second)}
	if s.Password != "" {
		options = append(options, redis.DialPassword(s.Password))
	}
	b.dial = func() (redis.Conn, error) { return redis.DialURL(o.RedisURL, options...) }
	b.pool = &redis.Pool{Dial: b.dial, MaxIdle: 64, IdleTimeout: time.Minute, TestOnBorrow: nil}
	return b, nil
}

// Visibility is the visibility timeout the loop touches by.
func (b *ValkeyBus) Visibility() time.Duration { return b.ValkeyOptions.Visibility }

// Connected is true while the last command reached the server.
func (b *ValkeyBus) Connected() bool { return b.connected.Load() }

// do runs one command on a pooled connection and records whether the server answered.
func (b *ValkeyBus) do(f func(redis.Conn) error) error {
	conn := b.pool.Get()
	defer conn.Close()
	err := f(conn)
	var serverErr redis.Error
	b.connected.Store(err == nil || errors.As(err, &serverErr))
	return err
}

// settle runs a settling command, retrying it while the bus is away: the work is done
// and must not be redone. An error of the server itself is returned at once.
func (b *ValkeyBus) settle(f func(redis.Conn) error) error {
	delay := 50 * time.Millisecond
	for {
		err := b.do(f)
		var serverErr redis.Error
		if err == nil || errors.As(err, &serverErr) || b.closed.Load() {
			return err
		}
		b.log.Warn(fmt.Sprintf("settling failed (%v); retrying in %s", err, delay), nil)
		select {
		case <-time.After(delay):
		case <-b.closedCh:
			return err
		}
		if delay *= 2; delay > b.settleRetryMaxBackoff {
			delay = b.settleRetryMaxBackoff
		}
	}
}

// EnsureGroups creates the channel's groups on both streams, retrying while the bus is
// away (until stop).
func (b *ValkeyBus) EnsureGroups(stop <-chan struct{}) error {
	for failures := 1; ; failures++ {
		err := b.ensureGroups(false)
		if err == nil {
			return nil
		}
		b.log.Warn(fmt.Sprintf("cannot create the consumer groups (%v); retrying", err), nil)
		select {
		case <-stop:
			return nil
		case <-time.After(time.Duration(minInt(5000, 100<<minInt(failures, 6))) * time.Millisecond):
		}
	}
}

func (b *ValkeyBus) ensureGroups(lost bool) error {
	flag := ""
	if lost {
		flag = "0"
	}
	return b.do(func(c redis.Conn) error {
		for _, stream := range b.streams {
			if _, err := ensureGroup.Do(c, stream, b.channel, flag); err != nil {
				return err
			}
			if _, err := c.Do("SADD", b.Prefix+":streams", stream); err != nil {
				return err
			}
		}
		return nil
	})
}

func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// Fetch returns up to count messages: first what dead consumers left behind, else new ones.
func (b *ValkeyBus) Fetch(free int) ([]*Message, error) {
	count := minInt(free, b.ReadCount)
	out, err := b.reclaim(count)
	if err == nil && len(out) == 0 {
		out, err = b.read(count)
	}
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		// the server lost the group (a restart without persistence): create it again at 0
		b.log.Warn("consumer group gone; creating it again", nil)
		return nil, b.ensureGroups(true)
	}
	return out, err
}

func (b *ValkeyBus) readerConn() (redis.Conn, error) {
	b.readerMu.Lock()
	defer b.readerMu.Unlock()
	if !b.reading.Load() {
		return nil, errors.New("stopped reading")
	}
	if b.reader == nil || b.reader.Err() != nil {
		conn, err := b.dial()
		if err != nil {
			b.connected.Store(false)
			return nil, err
		}
		b.reader = conn
	}
	return b.reader, nil
}

func (b *ValkeyBus) read(count int) ([]*Message, error) {
	conn, err := b.readerConn()
	if err != nil {
		return nil, err
	}
	args := []any{"GROUP", b.channel, b.consumer, "COUNT", count}
	if b.BlockMs > 0 { // block_ms=0 means polling, not BLOCK 0 (forever)
		args = append(args, "BLOCK", b.BlockMs)
	}
	args = append(args, "STREAMS", b.streams[0], b.streams[1], ">", ">")
	reply, err := conn.Do("XREADGROUP", args...)
	if err != nil {
		return nil, err
	}
	b.connected.Store(true)
	if reply == nil && b.BlockMs == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	streams, _ := redis.Values(reply, nil)
	var out []*Message
	for _, s := range streams {
		pair, _ := redis.Values(s, nil)
		if len(pair) != 2 {
			continue
		}
		name, _ := redis.String(pair[0], nil)
		entries, _ := redis.Values(pair[1], nil)
		for _, e := range entries {
			if m := entryMessage(name, e, 1); m != nil {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

// reclaim takes over (XAUTOCLAIM) what has been idle longer than the visibility timeout.
func (b *ValkeyBus) reclaim(count int) ([]*Message, error) {
	every := b.ValkeyOptions.Visibility / 4
	if every > time.Second {
		every = time.Second
	}
	if time.Since(b.lastClaim) < every {
		return nil, nil
	}
	b.lastClaim = time.Now()
	var out []*Message
	err := b.do(func(c redis.Conn) error {
		for _, stream := range b.streams {
			claimed, err := b.claim(c, stream, count)
			if err != nil {
				return err
			}
			out = append(out, claimed...)
		}
		return nil
	})
	return out, err
}

func (b *ValkeyBus) claim(c redis.Conn, stream string, count int) ([]*Message, error) {
	reply, err := redis.Values(c.Do("XAUTOCLAIM", stream, b.channel, b.consumer,
		b.ValkeyOptions.Visibility.Milliseconds(), "0-0", "COUNT", count))
	if err != nil || len(reply) < 2 {
		return nil, err
	}
	entries, _ := redis.Values(reply[1], nil)
	var live []*Message
	for _, e := range entries {
		if m := entryMessage(stream, e, 0); m != nil {
			live = append(live, m)
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	rows, err := redis.Values(c.Do("XPENDING", stream, b.channel, live[0].ID, live[len(live)-1].ID,
		2*len(live), b.consumer))
	if err != nil {
		return nil, err
	}
	times := map[string]int{}
	for _, row := range rows {
		fields, _ := redis.Values(row, nil)
		if len(fields) == 4 {
			id, _ := redis.String(fields[0], nil)
			times[id], _ = redis.Int(fields[3], nil)
		}
	}
	for _, m := range live {
		m.Attempt += maxInt(times[m.ID], 1)
	}
	return live, nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// -- settling: exactly one of these per message ---------------------------------------

// Ack is XACK.
func (b *ValkeyBus) Ack(m *Message) error {
	return b.settle(func(c redis.Conn) error {
		_, err := c.Do("XACK", m.Stream, b.channel, m.ID)
		return err
	})
}

// Retry parks the message in the delayed set of the channel's retry stream (or, with no
// delay, adds it to that stream), and acks it, in one MULTI.
func (b *ValkeyBus) Retry(m *Message, delay time.Duration) error {
	return b.settle(func(c redis.Conn) error {
		_ = c.Send("MULTI")
		if delay <= 0 {
			_ = c.Send("XADD", b.retryStream, "*", "m", m.Body, "a", m.Attempt)
		} else {
			zkey := b.Prefix + ":delayed:" + b.retryStream
			member := append([]byte(fmt.Sprintf("%d\n%s\n", m.Attempt, NewID())), m.Body...)
			_ = c.Send("ZADD", zkey, time.Now().Add(delay).UnixMilli(), member)
			_ = c.Send("SADD", b.Prefix+":delayed", zkey)
		}
		_ = c.Send("XACK", m.Stream, b.channel, m.ID)
		return exec(c)
	})
}

// DeadLetter adds the message to the channel's dead letters with the reason, and acks it.
func (b *ValkeyBus) DeadLetter(m *Message, reason string) error {
	return b.settle(func(c redis.Conn) error {
		_ = c.Send("MULTI")
		_ = c.Send("XADD", b.dead, "*", "m", m.Body, "reason", reason, "a", m.Attempt, "t", NowMs())
		_ = c.Send("XACK", m.Stream, b.channel, m.ID)
		return exec(c)
	})
}

// exec sends EXEC and returns the first error of the transaction, if any.
func exec(c redis.Conn) error {
	results, err := redis.Values(c.Do("EXEC"))
	if err != nil {
		return err
	}
	for _, r := range results {
		if e, ok := r.(redis.Error); ok {
			return e
		}
	}
	return nil
}

// Touch resets the idle time without counting a delivery.
func (b *ValkeyBus) Touch(m *Message) error {
	return b.do(func(c redis.Conn) error {
		_, err := c.Do("XCLAIM", m.Stream, b.channel, b.consumer, 0, m.ID, "IDLE", 0, "JUSTID")
		return err
	})
}

// Reply pushes a reply to its inbox. An address that is not an inbox, or a key of another
// type (WRONGTYPE), is refused for good: Undeliverable.
func (b *ValkeyBus) Reply(address string, body []byte) error {
	if !strings.HasPrefix(address, b.Prefix+":reply:") {
		return &Undeliverable{fmt.Errorf("reply address %s is not a reply inbox of this bus", address)}
	}
	err := b.settle(func(c redis.Conn) error {
		_ = c.Send("MULTI")
		_ = c.Send("RPUSH", address, body)
		_ = c.Send("PEXPIRE", address, replyTTLMs)
		return exec(c)
	})
	if err != nil && (strings.HasPrefix(err.Error(), "WRONGTYPE") || strings.HasPrefix(err.Error(), "EXECABORT")) {
		return &Undeliverable{err}
	}
	return err
}

// MoveDue moves due delayed retries back into their streams (housekeeping).
func (b *ValkeyBus) MoveDue() error {
	return b.do(func(c redis.Conn) error {
		zkeys, err := redis.Strings(c.Do("SMEMBERS", b.Prefix+":delayed"))
		if err != nil || len(zkeys) == 0 {
			return err
		}
		args := []any{1 + len(zkeys), b.Prefix + ":delayed"}
		for _, k := range zkeys {
			args = append(args, k)
		}
		args = append(args, NowMs(), 1000, len(b.Prefix+":delayed:"))
		_, err = b.moveDue.Do(c, args...)
		return err
	})
}

// StopReading closes the reading connection, which ends a blocked XREADGROUP at once.
func (b *ValkeyBus) StopReading() {
	b.reading.Store(false)
	b.readerMu.Lock()
	defer b.readerMu.Unlock()
	if b.reader != nil {
		_ = b.reader.Close()
	}
}

// Close ends every connection; idempotent.
func (b *ValkeyBus) Close() error {
	b.StopReading()
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.closedCh)
	})
	return b.pool.Close()
}

package kf

// The NSQ binding of docs/protocol.md §11, with the interface of the Valkey one: one SUB
// connection (a "link") per nsqd and topic (the channel's topic T and its replay topic
// T.C.replay), RDY shared so that at most KF_CONCURRENCY messages are in flight in all;
// FIN, REQ <delay ms>, TOUCH; dead letters published to T.C.dead; replies published to the
// reply topic on the nsqd the address names.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	nsqTick        = 100 * time.Millisecond // links are checked and reconnected this often
	nsqRotateEvery = 250 * time.Millisecond // fewer free slots than links: shares rotate
)

// nsqLink is one SUB connection: one nsqd, one topic; held counts its unsettled messages.
type nsqLink struct {
	node  NsqNode
	topic string
	key   string
	held  int
	rdy   int
	conn  *nsqConn
}

// NsqBus is the NSQ binding.
type NsqBus struct {
	config     *NsqConfig
	log        *Logger
	topic      string
	channel    string
	topics     [2]string
	deadTopic  string
	limit      int
	publishers *publishers

	mu         sync.Mutex
	nodes      []NsqNode
	links      map[string]*nsqLink
	connecting map[string]bool
	failures   map[string]int
	nextTry    map[string]time.Time
	queue      []*Message
	msgTimeout time.Duration
	offset     int
	rotated    time.Time
	refreshed  time.Time
	reading    bool
	closed     bool
	wake       chan struct{}
	stop       chan struct{}
	lookupMu   sync.Mutex
}

// NewNsqBus prepares the binding (no connection yet).
func NewNsqBus(s Settings, log *Logger) (*NsqBus, error) {
	config, err := ParseNsqURL(s.BusURL)
	if err != nil {
		return nil, err
	}
	if len(config.Unknown) > 0 {
		log.Warn(fmt.Sprintf("bus URL option(s) %s ignored: not known to this version", strings.Join(config.Unknown, ", ")), nil)
	}
	wire, err := wireName(config.Prefix, s.Topic)
	if err != nil {
		return nil, err
	}
	b := &NsqBus{config: config, log: log, topic: s.Topic, channel: s.Channel,
		topics: [2]string{wire, sideTopic(wire, s.Channel, "replay")}, deadTopic: sideTopic(wire, s.Channel, "dead"),
		limit: maxInt(1, s.Concurrency), publishers: newPublishers(config, log),
		nodes: append([]NsqNode{}, config.Nsqd...), links: map[string]*nsqLink{},
		connecting: map[string]bool{}, failures: map[string]int{}, nextTry: map[string]time.Time{},
		msgTimeout: 60 * time.Second, reading: true, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	if config.MsgTimeout > 0 {
		b.msgTimeout = config.MsgTimeout
	}
	return b, nil
}

// Visibility is nsqd's msg_timeout: the runtime touches a message every third of it.
func (b *NsqBus) Visibility() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.msgTimeout
}

// Connected is true while a link or a publishing connection is up.
func (b *NsqBus) Connected() bool {
	b.mu.Lock()
	up := false
	for _, l := range b.links {
		up = up || l.conn.isAlive()
	}
	b.mu.Unlock()
	return up || b.publishers.alive()
}

// EnsureGroups finds the nsqd nodes (waiting while there are none), SUBs on each, and
// returns once every nsqd had its chance: a message published after this is not missed.
func (b *NsqBus) EnsureGroups(stop <-chan struct{}) error {
	for failures := 1; len(b.knownNodes()) == 0; failures++ {
		b.refreshNodes()
		if len(b.knownNodes()) > 0 {
			break
		}
		delay := time.Duration(minInt(10000, 100<<minInt(failures, 7))) * time.Millisecond
		b.log.Warn(fmt.Sprintf("no nsqd known through %s yet; retrying in %s", strings.Join(b.config.LookupdHTTP, ","), delay), nil)
		select {
		case <-stop:
			return nil
		case <-time.After(delay):
		}
	}
	go b.supervise()
	deadline := time.Now().Add(b.config.DialTimeout + time.Second)
	for time.Now().Before(deadline) && !b.everyLinkTried() {
		select {
		case <-stop:
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func (b *NsqBus) knownNodes() []NsqNode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]NsqNode{}, b.nodes...)
}

func (b *NsqBus) everyLinkTried() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.nodes {
		for _, t := range b.topics {
			key := n.TCP + "/" + t
			if b.links[key] == nil && (b.connecting[key] || b.failures[key] == 0) {
				return false
			}
		}
	}
	return true
}

// Fetch waits (up to a second) for received messages and hands out at most count.
func (b *NsqBus) Fetch(count int) ([]*Message, error) {
	b.mu.Lock()
	empty := len(b.queue) == 0 && b.reading
	b.mu.Unlock()
	if empty {
		select {
		case <-b.wake:
		case <-b.stop:
		case <-time.After(time.Second):
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*Message
	for len(out) < count && len(b.queue) > 0 {
		m := b.queue[0]
		b.queue = b.queue[1:]
		if !m.done && m.link.conn.isAlive() { // else nsqd hands it out again
			out = append(out, m)
		}
	}
	return out, nil
}

// -- settling: exactly one of these per message ---------------------------------------

// Ack is FIN.
func (b *NsqBus) Ack(m *Message) error { return b.settle(m, "FIN") }

// Retry is REQ with the delay in ms (capped at nsqd's max-req-timeout).
func (b *NsqBus) Retry(m *Message, delay time.Duration) error {
	if delay > b.config.MaxReqTimeout {
		b.log.Warn(fmt.Sprintf("retry delay %s capped at nsqd's max-req-timeout", delay), fields{"attempt": m.Attempt})
		delay = b.config.MaxReqTimeout
	}
	return b.settle(m, "REQ", strconv.FormatInt(maxInt64(0, delay.Milliseconds()), 10))
}

func maxInt64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// DeadLetter PUBs the dead-letter map to T.C.dead on the nsqd the message came from, then FINs.
func (b *NsqBus) DeadLetter(m *Message, reason string) error {
	if err := b.checkAlive(m); err != nil {
		return err
	}
	prefer := m.link.node.TCP
	err := b.publishers.publish(b.knownNodes(), b.deadTopic, b.letter(m.Body, reason, m.Attempt), prefer)
	var refused *NsqdRefused
	if errors.As(err, &refused) { // too big for nsqd with the wrapper: keep what we can
		note := fmt.Sprintf("%s [body of %d bytes not kept: %v]", reason, len(m.Body), err)
		err = b.publishers.publish(b.knownNodes(), b.deadTopic, b.letter([]byte{}, note, m.Attempt), prefer)
	}
	if err != nil {
		_ = b.settle(m, "REQ", "1000") // not kept anywhere: the next attempt dead-letters it again
		return err
	}
	return b.settle(m, "FIN")
}

func (b *NsqBus) letter(body []byte, reason string, attempt int) []byte {
	data, _ := EncodeMapValue(NewMap("v", int64(1), "id", NewID(), "body", body, "reason", reason,
		"attempt", int64(attempt), "time", NowMs(), "topic", b.topic, "channel", b.channel))
	return data
}

// Touch is TOUCH.
func (b *NsqBus) Touch(m *Message) error {
	b.mu.Lock()
	done := m.done
	b.mu.Unlock()
	if done {
		return nil
	}
	if err := b.checkAlive(m); err != nil {
		return err
	}
	return m.link.conn.send("TOUCH", []string{m.ID}, nil)
}

func (b *NsqBus) checkAlive(m *Message) error {
	if !m.link.conn.isAlive() {
		return fmt.Errorf("connection to nsqd %s was lost; nsqd hands the message out again after its msg_timeout",
			m.link.node.TCP)
	}
	return nil
}

func (b *NsqBus) settle(m *Message, verb string, args ...string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.done {
		return nil
	}
	m.done = true
	m.link.held--
	defer b.rebalance()
	if err := b.checkAlive(m); err != nil {
		return err
	}
	return m.link.conn.send(verb, append([]string{m.ID}, args...), nil)
}

// Reply publishes to kf.r.<32 hex>#ephemeral on the nsqd the address names when it is
// known (after asking nsqlookupd once more), else on any nsqd known; it never dials an
// address a message names.
func (b *NsqBus) Reply(address string, body []byte) error {
	topic, nsqd, ok := parseReplyAddress(address)
	if !ok {
		return &Undeliverable{fmt.Errorf("reply address %s is not a reply inbox of an NSQ bus", address)}
	}
	if !knows(b.knownNodes(), nsqd) {
		b.refreshNodes()
	}
	err := b.publishers.publish(b.knownNodes(), topic, body, nsqd)
	var refused *NsqdRefused
	if errors.As(err, &refused) {
		return &Undeliverable{err} // nsqd refuses it for good
	}
	return err
}

func knows(nodes []NsqNode, tcp string) bool {
	for _, n := range nodes {
		if n.TCP == tcp {
			return true
		}
	}
	return false
}

// MoveDue does nothing: nsqd defers REQ and DPUB itself.
func (b *NsqBus) MoveDue() error { return nil }

// StopReading sends RDY 0 everywhere and hands back what was received but not fetched.
func (b *NsqBus) StopReading() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reading = false
	for _, m := range b.queue {
		b.handBack(m)
	}
	b.queue = nil
	b.rebalance()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Close sends CLS on every link (nsqd answers once every earlier FIN/REQ is processed),
// then closes; idempotent.
func (b *NsqBus) Close() error {
	b.StopReading()
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.stop)
	links := b.links
	b.links = map[string]*nsqLink{}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Add(1)
		go func(l *nsqLink) {
			defer wg.Done()
			_, _ = l.conn.command("CLS", nil, nil, time.Second)
			l.conn.close("closed")
		}(l)
	}
	wg.Wait()
	b.publishers.close()
	return nil
}

// -- links -------------------------------------------------------------------------------

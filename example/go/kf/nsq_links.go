package kf

// The NSQ binding's connections: links to every nsqd, RDY shares, nsqlookupd polling.

import (
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"time"
)

func (b *NsqBus) supervise() {
	tick := time.NewTicker(nsqTick)
	defer tick.Stop()
	for {
		b.mu.Lock()
		poll := time.Since(b.refreshed) >= b.config.LookupdPoll
		b.mu.Unlock()
		if poll {
			go b.refreshNodes()
		}
		b.sync()
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
	}
}

// sync connects every link not yet connected (with backoff after failures); rotates shares.
func (b *NsqBus) sync() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || !b.reading {
		return
	}
	now := time.Now()
	for _, node := range b.nodes {
		for _, topic := range b.topics {
			key := node.TCP + "/" + topic
			if l := b.links[key]; l != nil {
				if l.conn.isAlive() {
					continue
				}
				delete(b.links, key) // lost before lost() could see it
			}
			if b.connecting[key] || now.Before(b.nextTry[key]) {
				continue
			}
			b.connecting[key] = true
			go b.connect(&nsqLink{node: node, topic: topic, key: key, rdy: -1})
		}
	}
	if now.Sub(b.rotated) >= nsqRotateEvery {
		b.rotated = now
		b.offset++
		b.rebalance()
	}
}

func (b *NsqBus) connect(link *nsqLink) {
	conn, err := dialNsqd(link.node.TCP, b.config, b.log,
		func(id string, attempts int, body []byte) { b.received(link, id, attempts, body) },
		func() { b.lost(link) })
	if err == nil {
		link.conn = conn
		_, err = conn.command("SUB", []string{link.topic, b.channel}, nil, 5*time.Second)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.connecting, link.key)
	if err != nil {
		b.failed(link.key, err.Error())
		if conn != nil {
			go conn.close("SUB failed")
		}
		return
	}
	if b.closed || !b.reading {
		go func() { _, _ = conn.command("CLS", nil, nil, time.Second); conn.close("closed") }()
		return
	}
	if b.failures[link.key] > 0 {
		b.log.Info(fmt.Sprintf("consuming %s/%s on nsqd %s again", link.topic, b.channel, link.node.TCP), nil)
	}
	delete(b.failures, link.key)
	b.links[link.key] = link
	if conn.msgTimeout > 0 {
		b.msgTimeout = conn.msgTimeout
	}
	b.rebalance()
}

// failed (locked) records a failed link and when to try again.
func (b *NsqBus) failed(key, why string) {
	b.failures[key]++
	ceiling := float64(minInt(5000, 100<<minInt(b.failures[key], 6)))
	b.nextTry[key] = time.Now().Add(time.Duration(ceiling*(0.5+rand.Float64()/2)) * time.Millisecond)
	if b.failures[key] == 1 {
		b.log.Warn(fmt.Sprintf("cannot consume %s/%s: %s", key, b.channel, why), nil)
	}
}

func (b *NsqBus) lost(link *nsqLink) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.links[link.key] != link {
		return
	}
	delete(b.links, link.key)
	if !b.closed {
		b.failed(link.key, "connection lost")
	}
	b.rebalance()
}

// rebalance (locked) sends each live link its RDY share.
func (b *NsqBus) rebalance() {
	keys := make([]string, 0, len(b.links))
	for k, l := range b.links {
		if l.conn.isAlive() {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	held := make([]int, len(keys))
	primary := make([]bool, len(keys))
	for i, k := range keys {
		held[i], primary[i] = b.links[k].held, b.links[k].topic == b.topics[0]
	}
	counts := make([]int, len(keys))
	if b.reading {
		counts = allot(held, b.limit, b.offset, primary)
	}
	for i, k := range keys {
		l := b.links[k]
		rdy := minInt(counts[i], l.conn.maxRdy)
		if rdy != l.rdy && l.conn.send("RDY", []string{strconv.Itoa(rdy)}, nil) == nil {
			l.rdy = rdy
		}
	}
}

func (b *NsqBus) received(link *nsqLink, id string, attempts int, body []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := &Message{ID: id, Body: body, Attempt: attempts, link: link}
	link.held++
	if !b.reading {
		b.handBack(m)
		return
	}
	b.queue = append(b.queue, m)
	select {
	case b.wake <- struct{}{}:
	default:
	}
	b.rebalance()
}

// handBack (locked) requeues a message the runtime never saw.
func (b *NsqBus) handBack(m *Message) {
	if m.done {
		return
	}
	m.done = true
	m.link.held--
	_ = m.link.conn.send("REQ", []string{m.ID, "0"}, nil) // a lost connection: nsqd redelivers anyway
}

// refreshNodes re-reads the nsqd nodes from nsqlookupd (kept as they were when none answers).
func (b *NsqBus) refreshNodes() {
	b.lookupMu.Lock()
	defer b.lookupMu.Unlock()
	b.mu.Lock()
	b.refreshed = time.Now()
	b.mu.Unlock()
	if len(b.config.LookupdHTTP) == 0 {
		return
	}
	found := []NsqNode{}
	var errs []string
	for _, lookupd := range b.config.LookupdHTTP {
		nodes, err := lookupNodes(lookupd, b.config.DialTimeout+3*time.Second)
		if err != nil {
			errs = append(errs, err.Error())
		}
		found = append(found, nodes...)
	}
	if len(errs) == len(b.config.LookupdHTTP) {
		b.log.Warn("no nsqlookupd answered: "+strings.Join(errs, "; "), nil)
		return
	}
	nodes := append([]NsqNode{}, b.config.Nsqd...)
	for _, n := range found {
		if !knows(nodes, n.TCP) {
			nodes = append(nodes, n)
		}
	}
	b.mu.Lock()
	b.nodes = nodes
	b.mu.Unlock()
}

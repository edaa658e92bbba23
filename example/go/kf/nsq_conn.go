package kf

// A small client for nsqd's TCP protocol (V2): one connection, the publishing connections
// of a process, and the one nsqlookupd call the binding needs. No Debian package offers an
// NSQ client for Go, and the binding needs one RDY budget over two topics anyway
// (docs/other-languages.md §4), so the framing, IDENTIFY and heartbeats are written here.

import (
	"bufio"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	frameResponse = 0
	frameError    = 1
	frameMessage  = 2
	userAgent     = "kubefuncs-go/0.1.0"
	maxFrameBytes = MaxBodyBytes + 1024
)

// error frames that answer a FIN/REQ/TOUCH (which have no success response), not a command
var settleError = regexp.MustCompile(`^E_(FIN|REQ|TOUCH)_FAILED`)

// NsqdRefused is nsqd answering a command with an error frame (E_BAD_TOPIC, ...).
type NsqdRefused struct{ Msg string }

func (e *NsqdRefused) Error() string { return e.Msg }

type answer struct {
	text string
	err  error
}

// nsqConn is one TCP connection to one nsqd.
type nsqConn struct {
	address    string
	config     *NsqConfig
	log        *Logger
	conn       net.Conn
	writeMu    sync.Mutex
	mu         sync.Mutex
	pending    []chan answer
	alive      bool
	closeOnce  sync.Once
	onMessage  func(id string, attempts int, body []byte)
	onClose    func()
	msgTimeout time.Duration
	maxRdy     int
}

// dialNsqd connects and IDENTIFYs (feature negotiation, so nsqd tells its msg_timeout).
func dialNsqd(address string, config *NsqConfig, log *Logger,
	onMessage func(string, int, []byte), onClose func()) (*nsqConn, error) {
	conn, err := net.DialTimeout("tcp", address, config.DialTimeout)
	if err != nil {
		return nil, err
	}
	c := &nsqConn{address: address, config: config, log: log, conn: conn, alive: true,
		onMessage: onMessage, onClose: onClose, maxRdy: 2500}
	if onMessage == nil {
		c.onMessage = func(string, int, []byte) {}
	}
	if _, err := conn.Write([]byte("  V2")); err != nil {
		c.close(err.Error())
		return nil, err
	}
	go c.readLoop()
	text, err := c.command("IDENTIFY", nil, c.identity(), config.DialTimeout)
	if err != nil {
		return nil, err
	}
	if text != "OK" { // OK: an nsqd without feature negotiation
		var features struct {
			MsgTimeout  int64 `json:"msg_timeout"`
			MaxRdyCount int   `json:"max_rdy_count"`
		}
		_ = json.Unmarshal([]byte(text), &features)
		c.msgTimeout = time.Duration(features.MsgTimeout) * time.Millisecond
		if features.MaxRdyCount > 0 {
			c.maxRdy = features.MaxRdyCount
		}
	}
	return c, nil
}

func (c *nsqConn) identity() []byte {
	host, _ := os.Hostname()
	out := map[string]any{
		"client_id": fmt.Sprintf("%s-%d", host, os.Getpid()), "hostname": host, "user_agent": userAgent,
		"feature_negotiation": true, "heartbeat_interval": c.config.Heartbeat.Milliseconds(),
		"output_buffer_timeout": c.config.OutputBufferMs,
	}
	if c.config.MsgTimeout > 0 {
		out["msg_timeout"] = c.config.MsgTimeout.Milliseconds()
	}
	data, _ := json.Marshal(out)
	return data
}

func (c *nsqConn) isAlive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.alive
}

// send writes a command nsqd does not answer (RDY, FIN, REQ, TOUCH, NOP).
func (c *nsqConn) send(verb string, args []string, body []byte) error {
	if !c.isAlive() {
		return fmt.Errorf("connection to nsqd %s is closed", c.address)
	}
	line := strings.Join(append([]string{verb}, args...), " ") + "\n"
	data := []byte(line)
	if body != nil {
		size := make([]byte, 4)
		binary.BigEndian.PutUint32(size, uint32(len(body)))
		data = append(append(data, size...), body...)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(data); err != nil {
		c.close(err.Error())
		return err
	}
	return nil
}

// command sends a command nsqd answers (IDENTIFY, SUB, PUB, CLS) and waits for it.
func (c *nsqConn) command(verb string, args []string, body []byte, timeout time.Duration) (string, error) {
	reply := make(chan answer, 1)
	c.mu.Lock()
	if !c.alive {
		c.mu.Unlock()
		return "", fmt.Errorf("connection to nsqd %s is closed", c.address)
	}
	c.pending = append(c.pending, reply)
	c.mu.Unlock()
	if err := c.send(verb, args, body); err != nil {
		return "", err
	}
	select {
	case a := <-reply:
		return a.text, a.err
	case <-time.After(timeout):
		c.close(fmt.Sprintf("no answer to %s within %s", verb, timeout))
		return "", fmt.Errorf("nsqd %s: no answer to %s within %s", c.address, verb, timeout)
	}
}

func (c *nsqConn) readLoop() {
	reader := bufio.NewReaderSize(c.conn, 64*1024)
	head := make([]byte, 8)
	silence := 2*c.config.Heartbeat + time.Second // silent for two heartbeats: the peer is gone
	for {
		_ = c.conn.SetReadDeadline(time.Now().Add(silence))
		if _, err := io.ReadFull(reader, head); err != nil {
			c.close(err.Error())
			return
		}
		size := binary.BigEndian.Uint32(head[:4])
		if size < 4 || size > maxFrameBytes {
			c.close(fmt.Sprintf("frame of %d bytes", size))
			return
		}
		data := make([]byte, size-4)
		if _, err := io.ReadFull(reader, data); err != nil {
			c.close(err.Error())
			return
		}
		c.frame(binary.BigEndian.Uint32(head[4:]), data)
	}
}

func (c *nsqConn) frame(kind uint32, data []byte) {
	if kind == frameMessage {
		// timestamp (8 bytes, ns), attempts (uint16), id (16 bytes), body
		if len(data) >= 26 {
			c.onMessage(string(data[10:26]), int(binary.BigEndian.Uint16(data[8:10])), data[26:])
		}
		return
	}
	text := string(data)
	switch {
	case kind == frameResponse && text == "_heartbeat_":
		_ = c.send("NOP", nil, nil)
	case kind == frameResponse:
		c.answer(answer{text: text})
	case settleError.MatchString(text):
		c.log.Info(fmt.Sprintf("nsqd %s: %s", c.address, text), nil) // e.g. FIN after the msg_timeout
	default:
		c.log.Warn(fmt.Sprintf("nsqd %s: %s", c.address, text), nil)
		c.answer(answer{err: &NsqdRefused{fmt.Sprintf("nsqd %s: %s", c.address, text)}})
	}
}

func (c *nsqConn) answer(a answer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		c.pending[0] <- a
		c.pending = c.pending[1:]
	}
}

func (c *nsqConn) close(why string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.alive = false
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		_ = c.conn.Close()
		for _, p := range pending {
			p <- answer{err: fmt.Errorf("connection to nsqd %s lost: %s", c.address, why)}
		}
		if c.onClose != nil {
			go c.onClose() // not under a caller's lock: the bus takes its own
		}
	})
}

// publishers are the publishing connections: one per nsqd, dialled on demand. A topic
// goes to the nsqd ranked first by sha1("<nsqd tcp>/<topic>") (prefer before all), the
// next on failure.
type publishers struct {
	config    *NsqConfig
	log       *Logger
	mu        sync.Mutex
	conns     map[string]*nsqConn
	downUntil map[string]time.Time
	failures  map[string]int
	closed    bool
}

func newPublishers(config *NsqConfig, log *Logger) *publishers {
	return &publishers{config: config, log: log, conns: map[string]*nsqConn{},
		downUntil: map[string]time.Time{}, failures: map[string]int{}}
}

func (p *publishers) alive() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.isAlive() {
			return true
		}
	}
	return false
}

func (p *publishers) ranked(nodes []NsqNode, topic, prefer string) []NsqNode {
	type keyed struct {
		notPreferred, down bool
		hash               string
		node               NsqNode
	}
	now := time.Now()
	p.mu.Lock()
	list := make([]keyed, len(nodes))
	for i, n := range nodes {
		sum := sha1.Sum([]byte(n.TCP + "/" + topic))
		list[i] = keyed{n.TCP != prefer, p.downUntil[n.TCP].After(now), hex.EncodeToString(sum[:]), n}
	}
	p.mu.Unlock()
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.notPreferred != b.notPreferred {
			return !a.notPreferred
		}
		if a.down != b.down {
			return !a.down
		}
		return a.hash < b.hash
	})
	out := make([]NsqNode, len(list))
	for i, k := range list {
		out[i] = k.node
	}
	return out
}

func (p *publishers) publish(nodes []NsqNode, topic string, body []byte, prefer string) error {
	var errs []string
	for _, node := range p.ranked(nodes, topic, prefer) {
		conn, err := p.conn(node)
		if err == nil {
			_, err = conn.command("PUB", []string{topic}, body, 5*time.Second)
		}
		var refused *NsqdRefused
		if errors.As(err, &refused) {
			return err // any other nsqd would refuse it too
		}
		if err == nil {
			return nil
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		errs = []string{"no nsqd known"}
	}
	return fmt.Errorf("no nsqd took the message for %s: %s", topic, strings.Join(errs, "; "))
}

func (p *publishers) conn(node NsqNode) (*nsqConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock() // one dial at a time: rare, and it keeps one connection per nsqd
	if p.closed {
		return nil, errors.New("the bus is closed")
	}
	if c := p.conns[node.TCP]; c != nil && c.isAlive() {
		return c, nil
	}
	c, err := dialNsqd(node.TCP, p.config, p.log, nil, nil)
	if err != nil {
		p.failures[node.TCP]++
		backoff := time.Duration(minInt(5000, 100<<minInt(p.failures[node.TCP], 6))) * time.Millisecond
		p.downUntil[node.TCP] = time.Now().Add(backoff)
		return nil, err
	}
	delete(p.failures, node.TCP)
	delete(p.downUntil, node.TCP)
	p.conns[node.TCP] = c
	return c, nil
}

func (p *publishers) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.conns {
		c.close("closed")
	}
	p.conns = map[string]*nsqConn{}
}

// lookupNodes is the nsqd nodes an nsqlookupd knows (GET /nodes; nsq < 1.0 wraps it in "data").
func lookupNodes(lookupd string, timeout time.Duration) ([]NsqNode, error) {
	client := http.Client{Timeout: timeout}
	req, _ := http.NewRequest(http.MethodGet, "http://"+lookupd+"/nodes", nil)
	req.Header.Set("Accept", "application/vnd.nsq; version=1.0")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET http://%s/nodes failed: %v", lookupd, err)
	}
	defer resp.Body.Close()
	type producers struct {
		Producers []struct {
			Broadcast string `json:"broadcast_address"`
			Address   string `json:"address"`
			TCPPort   int    `json:"tcp_port"`
			HTTPPort  int    `json:"http_port"`
		} `json:"producers"`
	}
	var doc struct {
		producers
		Data *producers `json:"data"`
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET http://%s/nodes: %d", lookupd, resp.StatusCode)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("GET http://%s/nodes: not JSON (%v)", lookupd, err)
	}
	list := doc.producers
	if doc.Data != nil {
		list = *doc.Data
	}
	var out []NsqNode
	for _, p := range list.Producers {
		host := firstOf(p.Broadcast, p.Address, "127.0.0.1")
		if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
			host = "[" + host + "]"
		}
		out = append(out, NsqNode{fmt.Sprintf("%s:%d", host, p.TCPPort), fmt.Sprintf("%s:%d", host, p.HTTPPort)})
	}
	return out, nil
}

package kf

// Health endpoints and logs of a function process.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// ServeHealth serves /healthz (alive) and /readyz on addr; "" turns it off.
func ServeHealth(addr string, rt *Runtime) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !rt.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("KF_HEALTH_ADDR %s: %v", addr, err)
	}
	server := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(listener) }()
	return server, nil
}

// Logger writes one JSON object per line.
type Logger struct {
	mu    sync.Mutex
	level int
}

// NewLogger logs at level (Python's numbers: 20 = INFO) and above.
func NewLogger(level int) *Logger { return &Logger{level: level} }

func (l *Logger) write(level int, name, message string, extra fields) {
	if level < l.level {
		return
	}
	line := fields{"time": time.Now().UTC().Format(time.RFC3339Nano), "level": name,
		"logger": "kubefuncs-go", "message": message}
	for k, v := range extra {
		line[k] = v
	}
	data, _ := json.Marshal(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = os.Stdout.Write(append(data, '\n'))
}

// Info, Warn and Error log a line with extra fields (message id, attempt).
func (l *Logger) Info(message string, extra fields) { l.write(20, "info", message, extra) }

func (l *Logger) Warn(message string, extra fields) { l.write(30, "warn", message, extra) }

func (l *Logger) Error(message string, extra fields) { l.write(40, "error", message, extra) }

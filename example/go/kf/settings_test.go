package kf

import (
	"strings"
	"testing"
	"time"
)

func TestSettingsDefaultsAreThePythonRuntimes(t *testing.T) {
	s, err := SettingsFromEnv(map[string]string{"KF_TOPIC": "upper"})
	if err != nil {
		t.Fatal(err)
	}
	want := Settings{BusURL: "valkey://localhost:6379/0", Topic: "upper", Channel: "upper", Concurrency: 16,
		MaxAttempts: 5, Timeout: 30 * time.Second, Backoff: time.Second, BackoffMax: 300 * time.Second,
		Grace: 25 * time.Second, HealthAddr: "0.0.0.0:8081", ReplyErrorsAtOnce: true, LogLevel: 20}
	if s != want {
		t.Fatalf("got %+v", s)
	}
}

func TestAWrongValueNamesTheVariable(t *testing.T) {
	for env, want := range map[[2]string]string{
		{"KF_CONCURRENCY", "eight"}:            "KF_CONCURRENCY must be an integer, got 'eight'",
		{"KF_TIMEOUT_S", "soon"}:               "KF_TIMEOUT_S must be a number",
		{"KF_MAX_ATTEMPTS", "0"}:               "KF_MAX_ATTEMPTS must be at least 1",
		{"KF_CHANNEL", "a b"}:                  "KF_CHANNEL must be 1-64 of",
		{"KF_BUS_URL", "amqp://x"}:             "KF_BUS_URL must be a valkey://, redis:// or nsq:// URL",
		{"KF_BUS_URL", "nsq://x"}:              "KF_BUS_URL is not a usable NSQ URL",
		{"KF_REPLY_ERRORS_AT_ONCE", "perhaps"}: "KF_REPLY_ERRORS_AT_ONCE must be true or false",
	} {
		_, err := SettingsFromEnv(map[string]string{"KF_TOPIC": "t", env[0]: env[1]})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%s: got %v, want %q", env[0], env[1], err, want)
		}
	}
	if _, err := SettingsFromEnv(map[string]string{}); err == nil || err.Error() != "KF_TOPIC is not set" {
		t.Errorf("no topic: %v", err)
	}
}

func TestBackoffDoublesIsCappedAndJittered(t *testing.T) {
	cases := []struct {
		attempt int
		random  float64
		want    time.Duration
	}{{1, 0, time.Second}, {3, 0, 4 * time.Second}, {3, 0.999999, 2 * time.Second}, {20, 0, 10 * time.Second}}
	for _, c := range cases {
		got := Backoff(c.attempt, time.Second, 10*time.Second, c.random)
		if d := got - c.want; d > time.Millisecond || d < -time.Millisecond {
			t.Errorf("Backoff(%d, %g) = %s, want %s", c.attempt, c.random, got, c.want)
		}
	}
}

func TestValkeyURLOptions(t *testing.T) {
	o, err := ParseValkeyURL("valkeys://:pw@h:6380/2?prefix=p&visibility_timeout_s=5&block_ms=0&read_count=3")
	if err != nil {
		t.Fatal(err)
	}
	if o.RedisURL != "rediss://:pw@h:6380/2" || o.Prefix != "p" || o.Visibility != 5*time.Second ||
		o.BlockMs != 0 || o.ReadCount != 3 {
		t.Fatalf("%+v", o)
	}
	if _, err := ParseValkeyURL("valkey://h/0?read_count=0"); err == nil {
		t.Fatal("read_count=0 accepted")
	}
}

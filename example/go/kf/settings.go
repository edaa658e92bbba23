package kf

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Settings are the KF_* variables of the Python runtime that a function in another
// language reads (docs/other-languages.md §1); a pure function of the environment.
type Settings struct {
	BusURL            string
	Password          string
	Topic             string
	Channel           string
	Concurrency       int
	MaxAttempts       int
	Timeout           time.Duration
	Backoff           time.Duration
	BackoffMax        time.Duration
	Grace             time.Duration
	HealthAddr        string
	ReplyErrorsAtOnce bool
	LogLevel          int
}

var nameRule = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Log levels, as Python's logging numbers them.
var logLevels = map[string]int{"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}

// SettingsFromEnv reads the settings; an error names the variable and what it must be.
func SettingsFromEnv(env map[string]string) (Settings, error) {
	s := Settings{BusURL: orDefault(env, "KF_BUS_URL", "valkey://localhost:6379/0"), Password: env["KF_BUS_PASSWORD"]}
	var err error
	if s.Topic, err = name("KF_TOPIC", env["KF_TOPIC"]); err != nil {
		return s, err
	}
	channel := firstOf(env["KF_CHANNEL"], env["KF_FUNCTION_NAME"], s.Topic)
	if s.Channel, err = name("KF_CHANNEL", channel); err != nil {
		return s, err
	}
	if err = checkBusURL(s.BusURL, s.Topic); err != nil {
		return s, err
	}
	ints := []struct {
		dst      *int
		variable string
		fallback int
	}{{&s.Concurrency, "KF_CONCURRENCY", 16}, {&s.MaxAttempts, "KF_MAX_ATTEMPTS", 5}}
	for _, i := range ints {
		if *i.dst, err = integer(env, i.variable, i.fallback); err != nil {
			return s, err
		}
	}
	durations := []struct {
		dst      *time.Duration
		variable string
		fallback float64
		minimum  float64
	}{
		{&s.Timeout, "KF_TIMEOUT_S", 30, 0.001}, {&s.Backoff, "KF_BACKOFF_S", 1, 0},
		{&s.BackoffMax, "KF_BACKOFF_MAX_S", 300, 0}, {&s.Grace, "KF_GRACE_S", 25, 0},
	}
	for _, d := range durations {
		if *d.dst, err = seconds(env, d.variable, d.fallback, d.minimum); err != nil {
			return s, err
		}
	}
	if s.ReplyErrorsAtOnce, err = boolean(env, "KF_REPLY_ERRORS_AT_ONCE", true); err != nil {
		return s, err
	}
	s.HealthAddr = "0.0.0.0:8081"
	if addr, ok := env["KF_HEALTH_ADDR"]; ok {
		s.HealthAddr = addr
	}
	level := strings.ToUpper(orDefault(env, "KF_LOG_LEVEL", "INFO"))
	if s.LogLevel = logLevels[level]; s.LogLevel == 0 {
		return s, fmt.Errorf("KF_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got '%s'", level)
	}
	return s, nil
}

func orDefault(env map[string]string, key, fallback string) string {
	if v := env[key]; v != "" {
		return v
	}
	return fallback
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func name(variable, value string) (string, error) {
	if value == "" {
		return "", fmt.Errorf("%s is not set", variable)
	}
	if !nameRule.MatchString(value) {
		return "", fmt.Errorf("%s must be 1-64 of letters, digits, '.', '_' or '-', got '%s'", variable, value)
	}
	return value, nil
}

func checkBusURL(url, topic string) error {
	if strings.HasPrefix(url, "nsq://") {
		config, err := ParseNsqURL(url)
		if err != nil {
			return fmt.Errorf("KF_BUS_URL is not a usable NSQ URL: %v", err)
		}
		if _, err := wireName(config.Prefix, topic); err != nil {
			return fmt.Errorf("KF_TOPIC with the bus URL's prefix: %v", err)
		}
		return nil
	}
	if _, err := ParseValkeyURL(url); err != nil {
		return fmt.Errorf("KF_BUS_URL %v", err)
	}
	return nil
}

func integer(env map[string]string, variable string, fallback int) (int, error) {
	raw, ok := env[variable]
	if !ok {
		return fallback, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil {
		return 0, fmt.Errorf("%s must be an integer, got '%s'", variable, raw)
	}
	if n < 1 {
		return 0, fmt.Errorf("%s must be at least 1, got '%s'", variable, raw)
	}
	return n, nil
}

func seconds(env map[string]string, variable string, fallback, minimum float64) (time.Duration, error) {
	value := fallback
	if raw, ok := env[variable]; ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || f != f {
			return 0, fmt.Errorf("%s must be a number, got '%s'", variable, raw)
		}
		if f < minimum {
			return 0, fmt.Errorf("%s must be at least %g, got '%s'", variable, minimum, raw)
		}
		value = f
	}
	return time.Duration(value * float64(time.Second)), nil
}

func boolean(env map[string]string, variable string, fallback bool) (bool, error) {
	raw, ok := env[variable]
	if !ok {
		return fallback, nil
	}
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s must be true or false, got '%s'", variable, raw)
}

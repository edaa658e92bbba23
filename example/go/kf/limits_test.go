package kf

import (
	"bytes"
	"strings"
	"testing"
)

// Hostile bodies: announced lengths far beyond the body, too many elements, too deep. Each
// is a DecodeError, found before anything big is allocated.

func envelopeWithPayload(payload []byte) []byte {
	head := []byte{0x84, 0xa1, 'v', 0x01, 0xa2, 'i', 'd', 0xa1, '1', 0xa4, 'k', 'i', 'n', 'd', 0xa5, 'e', 'v', 'e', 'n', 't'}
	head = append(head, 0xa7)
	head = append(head, []byte("payload")...)
	return append(head, payload...)
}

func TestAnnouncedLengthsBeyondTheBodyAreRefused(t *testing.T) {
	for name, payload := range map[string][]byte{
		"array32 of 4G items": {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 of 4G pairs":   {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a'},
		"str32 of 4 GB":       {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'},
		"bin32 of 4 GB":       {0xc6, 0xff, 0xff, 0xff, 0xff, 'x'},
		"ext32":               {0xc9, 0x00, 0x00, 0x00, 0x01, 0x05, 0x00},
	} {
		_, err := Decode(envelopeWithPayload(payload))
		if _, ok := err.(*DecodeError); !ok {
			t.Errorf("%s: want a DecodeError, got %v", name, err)
		}
	}
}

func TestMoreThanAMillionElementsAreRefused(t *testing.T) {
	var payload bytes.Buffer
	payload.Write([]byte{0xdd, 0x00, 0x0f, 0x42, 0x41}) // array32 of 1 000 001 items
	payload.Write(bytes.Repeat([]byte{0xc0}, 1000001))
	_, err := Decode(envelopeWithPayload(payload.Bytes()))
	if err == nil || !strings.Contains(err.Error(), "more than 1000000 elements") {
		t.Fatalf("got %v", err)
	}
}

func TestAnEmptyContainerMayBeLevel65ButNotAFullOne(t *testing.T) {
	nested := func(inner byte) []byte {
		return append(bytes.Repeat([]byte{0x91}, 64), inner) // 64 arrays of one item each
	}
	if _, err := Decode(envelopeWithPayload(nested(0x90))); err != nil {
		t.Fatalf("an empty array at level 65: %v", err)
	}
	_, err := Decode(envelopeWithPayload(append(nested(0x91), 0xc0)))
	if err == nil || !strings.Contains(err.Error(), "envelope field 'payload' is nested deeper than 64") {
		t.Fatalf("got %v", err)
	}
}

func TestABodyOverTheSizeLimitIsRefused(t *testing.T) {
	_, err := Decode(make([]byte, MaxBodyBytes+1))
	if err == nil || !strings.Contains(err.Error(), "over the 67108864 limit") {
		t.Fatalf("got %v", err)
	}
}

package cluster

import (
	"net"
	"strconv"
	"testing"
)

// A port the harness hands a process must not be one the kernel can give
// an outgoing connection in the meantime: it comes from below the
// ephemeral range, and nothing listens on it.
func TestFreePortIsBelowTheEphemeralRange(t *testing.T) {
	low := ephemeralLow()
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p >= low || p < 1024 {
			t.Fatalf("port %d is not in [1024, %d)", p, low)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
		seen[p] = true
	}
	if len(seen) < 40 {
		t.Fatalf("50 picks gave %d ports: not spread", len(seen))
	}
}

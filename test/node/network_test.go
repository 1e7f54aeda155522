package node

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/podpreset/podpreset/test/cluster"
)

// TestTheBridgeKeepsItsAddress: a port joining the node's bridge with a
// lower hardware address than any, and leaving it, as a pod's veth does
// when the pod starts and is deleted, does not change the bridge's
// address: the pods' ARP entries for the host's addresses on the bridge
// (the API server's) stay right.
func TestTheBridgeKeepsItsAddress(t *testing.T) {
	mac := func() string {
		t.Helper()
		b, err := os.ReadFile("/sys/class/net/" + cluster.BridgeLink + "/address")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if got := mac(); got != cluster.BridgeMAC {
		t.Fatalf("the bridge's address is %s, want %s", got, cluster.BridgeMAC)
	}
	const port = "ppmactest0"
	ip("link", "add", port, "address", "02:00:00:00:00:01", "type", "veth", "peer", "name", port+"p")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", port).Run() })
	ip("link", "set", port, "master", cluster.BridgeLink)
	ip("link", "set", port, "up")
	if got := mac(); got != cluster.BridgeMAC {
		t.Errorf("with a port of address 02:00:00:00:00:01 the bridge's address is %s, want %s", got, cluster.BridgeMAC)
	}
	ip("link", "del", port)
	if got := mac(); got != cluster.BridgeMAC {
		t.Errorf("after the port left, the bridge's address is %s, want %s", got, cluster.BridgeMAC)
	}
}

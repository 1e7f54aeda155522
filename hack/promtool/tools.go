//go:build tools

// Package tools pins promtool, which make test-monitoring builds (without
// Prometheus' service discoveries: -tags remove_all_sd) to check the alert
// rules and run their tests (manifests/monitoring).
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"

package tooltest

import "testing"

// Prometheus returns the path of the prometheus server (Debian's
// prometheus package; .ci/run installs it).
func Prometheus(t testing.TB) string { return find(t, "prometheus") }

// Promtool returns the path of promtool (Debian's prometheus package).
func Promtool(t testing.TB) string { return find(t, "promtool") }

// Jaeger returns the path of the Jaeger all-in-one binary (scripts/tools.sh
// builds it into .tools/bin).
func Jaeger(t testing.TB) string { return find(t, "jaeger") }

// Fortio returns the path of the fortio load generator (scripts/tools.sh).
func Fortio(t testing.TB) string { return find(t, "fortio") }

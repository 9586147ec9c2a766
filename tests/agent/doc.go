// Package agent_test runs the sidecar agent (sidecar/agent) against the
// real mesh CA (reconciler/ca, served over gRPC+TLS on 127.0.0.1), a
// go-control-plane xDS server reached over mTLS, and real Envoy processes.
// It lives in tests/ because it needs the control plane and the sidecar at
// once, which the sidecar's own folder may not import.
package agent_test

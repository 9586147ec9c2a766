package compiler

import (
	"github.com/weft-dev/weft/schema/mesh"
)

// testCase is a small mesh that exercises one feature. Its golden output
// is testdata/golden/<name>/<class>.yaml.
type testCase struct {
	name  string
	build func() (*mesh.Model, Endpoints)
}

func model(svcs ...*mesh.Service) func() (*mesh.Model, Endpoints) {
	return func() (*mesh.Model, Endpoints) { return newModel(svcs...), nil }
}

// cases builds fresh models on every call (tests may shuffle them).
func cases() []testCase {
	return []testCase{
		{"basic", model(
			calls(svc("frontend", 8080), "reviews"),
			svc("reviews", 9080, "v1", "v2"),
		)},
		{"split", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080, "v1", "v2", "v3")
			rv.Routes = []mesh.Route{
				{Name: "pinned", Match: prefix("/pinned"), To: map[string]int{"v1": 100, "v2": 0}},
				{Name: "canary", Match: mesh.Match{Headers: map[string]mesh.StringMatch{"x-canary": {Exact: ptr("1")}}}, To: map[string]int{"v3": 100}},
				{Name: "split", Match: prefix("/"), To: map[string]int{"v1": 80, "v2": 20, "v3": 0}},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"route-precedence", func() (*mesh.Model, Endpoints) {
			// Written in the "wrong" order: the compiled table is in
			// precedence order (priority; exact, regex, longer prefix;
			// methods; more headers; name), whatever the order here.
			rv := svc("reviews", 9080, "v1", "v2")
			canary := map[string]mesh.StringMatch{"x-canary": {Exact: ptr("1")}}
			rv.Routes = []mesh.Route{
				{Name: "all", Match: prefix("/"), To: map[string]int{"v1": 100}},
				{Name: "canary", Match: mesh.Match{Headers: canary}, To: map[string]int{"v2": 100}, RateLimit: &mesh.RateLimit{RequestsPerSecond: 10}},
				{Name: "api", Match: prefix("/api"), To: map[string]int{"v1": 100}},
				{Name: "api-v1", Match: prefix("/api/v1"), To: map[string]int{"v2": 100}},
				{Name: "item", Match: mesh.Match{Path: &mesh.StringMatch{Regex: ptr("^/items/[0-9]+$")}}, To: map[string]int{"v2": 100}},
				{Name: "health", Match: mesh.Match{Path: &mesh.StringMatch{Exact: ptr("/healthz")}}},
				{Name: "writes", Match: mesh.Match{Path: &mesh.StringMatch{Prefix: ptr("/api")}, Methods: []string{"POST"}}, To: map[string]int{"v1": 100}},
				{Name: "debug-canary", Match: mesh.Match{Headers: map[string]mesh.StringMatch{"x-canary": {Exact: ptr("1")}, "x-debug": {Present: ptr(true)}}}, To: map[string]int{"v1": 100}},
				{Name: "pinned", Priority: 10, Match: prefix("/pinned"), To: map[string]int{"v1": 100}},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"header-match", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080, "v1", "v2")
			rv.Routes = []mesh.Route{
				{Name: "health", Match: mesh.Match{Path: &mesh.StringMatch{Exact: ptr("/healthz")}, Methods: []string{"GET"}}, To: map[string]int{"v1": 100}},
				{Name: "api", Match: mesh.Match{
					Path: &mesh.StringMatch{Regex: ptr("^/api/v[0-9]+/.*")},
					Headers: map[string]mesh.StringMatch{
						"x-user":  {Prefix: ptr("admin-")},
						"X-Debug": {Present: ptr(true)},
						"x-trace": {Regex: ptr("^[a-f0-9]{16}$")},
					},
				}, To: map[string]int{"v2": 100}},
				{Name: "writes", Match: mesh.Match{Methods: []string{"POST", "PUT", "DELETE"}}, To: map[string]int{"v1": 100}},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"retries", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Retries = &mesh.Retries{Attempts: 3, On: []string{"5xx", "gateway-error"}, PerTryTimeout: dur("250ms")}
			rv.Routes = []mesh.Route{
				{Name: "no-retry", Match: prefix("/pay"), Retries: &mesh.Retries{Attempts: 0}},
				{Name: "hard", Match: prefix("/flaky"), Retries: &mesh.Retries{Attempts: 5, On: []string{"reset", "retriable-4xx"}, PerTryTimeout: dur("1s")}},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"timeout", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Timeout = dur("3s")
			rv.Routes = []mesh.Route{{Name: "fast", Match: prefix("/fast"), Timeout: dur("500ms")}}
			// ratings keeps the mesh default (15s).
			return newModel(calls(svc("frontend", 8080), "reviews", "ratings"), rv, svc("ratings", 9090)), nil
		}},
		{"ratelimit-service", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.RateLimit = &mesh.RateLimit{RequestsPerSecond: 100, Burst: 200}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"ratelimit-route", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Routes = []mesh.Route{
				{Name: "search", Match: prefix("/search"), RateLimit: &mesh.RateLimit{RequestsPerSecond: 10}},
				{Name: "static", Match: prefix("/static")},
				{Name: "api", Match: mesh.Match{Path: &mesh.StringMatch{Prefix: ptr("/api")}, Methods: []string{"POST"}}, RateLimit: &mesh.RateLimit{RequestsPerSecond: 50, Burst: 100}},
				{Name: "rest", Match: prefix("/rest")},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"ratelimit-period", func() (*mesh.Model, Endpoints) {
			// Istio's rate-limit task: 4 requests, refilled 4 per minute.
			rv := svc("reviews", 9080)
			rv.RateLimit = &mesh.RateLimit{Requests: 4, Per: dur("60s")}
			rv.Routes = []mesh.Route{
				{Name: "reports", Match: prefix("/reports"), RateLimit: &mesh.RateLimit{Requests: 10, Per: dur("1h"), Burst: 2}},
				{Name: "all", Match: prefix("/")},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"ratelimit-both", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.RateLimit = &mesh.RateLimit{RequestsPerSecond: 100}
			rv.Routes = []mesh.Route{
				{Name: "expensive", Match: prefix("/expensive"), RateLimit: &mesh.RateLimit{RequestsPerSecond: 5}},
				{Name: "all", Match: prefix("/")},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"headers", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Headers = &mesh.Headers{
				Request: &mesh.HeaderOps{
					Set:    map[string]string{"x-mesh": "shop"},
					Add:    map[string]string{"X-Via": "weft"},
					Remove: []string{"x-internal-token"},
				},
				Response: &mesh.HeaderOps{
					Preset: "security",
					Set:    map[string]string{"x-frame-options": "SAMEORIGIN"},
					Remove: []string{"server"},
				},
			}
			rv.Routes = []mesh.Route{{
				Name:    "tagged",
				Match:   prefix("/"),
				Headers: &mesh.Headers{Request: &mesh.HeaderOps{Set: map[string]string{"x-mesh-route": "default"}}, Response: &mesh.HeaderOps{Add: map[string]string{"cache-control": "no-store"}}},
			}}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"fault", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Routes = []mesh.Route{
				{Name: "chaos", Match: prefix("/chaos"), Fault: &mesh.Fault{
					Delay: &mesh.FaultDelay{Percent: 5, Duration: *dur("1s")},
					Abort: &mesh.FaultAbort{Percent: 0.5, Status: 503},
				}},
				{Name: "broken", Match: prefix("/broken"), Fault: &mesh.Fault{Abort: &mesh.FaultAbort{Percent: 100, Status: 500}}},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"mirror", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Routes = []mesh.Route{
				{Name: "shadowed", Match: prefix("/v2"), Mirror: &mesh.Mirror{To: "reviews-next", Version: "v2", Percent: 12.5}},
				{Name: "all", Match: prefix("/"), Mirror: &mesh.Mirror{To: "audit", Percent: 100}},
			}
			audit := withPorts(svc("audit", 7070), mesh.Port{Name: "admin", Port: 7000, Protocol: mesh.TCP}, mesh.Port{Name: "http", Port: 7070, Protocol: mesh.HTTP})
			return newModel(calls(svc("frontend", 8080), "reviews"), rv, svc("reviews-next", 9080, "v1", "v2"), audit), nil
		}},
		{"mirror-version", func() (*mesh.Model, Endpoints) {
			// Istio's mirroring task: v1 serves, v2 gets a copy.
			rv := svc("reviews", 9080, "v1", "v2")
			rv.Routes = []mesh.Route{{Name: "mirrored", Match: prefix("/"), To: map[string]int{"v1": 100}, Mirror: &mesh.Mirror{To: "reviews", Version: "v2", Percent: 100}}}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"rewrite", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Routes = []mesh.Route{
				{Name: "legacy", Match: prefix("/legacy"), Rewrite: &mesh.Rewrite{Host: "legacy.reviews.internal"}},
				{Name: "ported", Match: prefix("/"), Rewrite: &mesh.Rewrite{Host: "reviews.example.com:8443"}},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"circuit-breaker", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.CircuitBreaker = &mesh.CircuitBreaker{MaxConnections: ptr[uint32](1000), MaxPendingRequests: ptr[uint32](100), MaxRequests: ptr[uint32](1000), MaxRetries: ptr[uint32](3)}
			// Istio's circuit-breaking task: one connection, one request per
			// connection (HTTP/1.1 options on the cluster); on a gRPC port
			// the cap goes next to HTTP/2.
			once := &mesh.CircuitBreaker{MaxConnections: ptr[uint32](1), MaxPendingRequests: ptr[uint32](1), MaxRequestsPerConnection: ptr[uint32](1)}
			httpbin := svc("httpbin", 8000)
			httpbin.CircuitBreaker = once
			stream := withPorts(svc("stream", 7000), mesh.Port{Name: "grpc", Port: 7000, Protocol: mesh.GRPC})
			stream.CircuitBreaker = &mesh.CircuitBreaker{MaxRequestsPerConnection: ptr[uint32](100)}
			m := newModel(calls(svc("frontend", 8080), "reviews", "ratings", "httpbin", "stream"), rv, svc("ratings", 9090), httpbin, stream)
			// ratings inherits the mesh default.
			m.Defaults.CircuitBreaker = &mesh.CircuitBreaker{MaxPendingRequests: ptr[uint32](50)}
			m.Services["ratings"].CircuitBreaker = nil
			resolveLikeLoader(m)
			return m, nil
		}},
		{"outlier-detection", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.OutlierDetection = &mesh.OutlierDetection{
				Consecutive5xx:           ptr[uint32](5),
				ConsecutiveGatewayErrors: ptr[uint32](3),
				Interval:                 dur("10s"),
				BaseEjectionTime:         dur("30s"),
				MaxEjectionPercent:       ptr(33.4),
			}
			// ratings leaves maxEjectionPercent to weft's default (50), not
			// Envoy's (10).
			rt := svc("ratings", 9090)
			rt.OutlierDetection = &mesh.OutlierDetection{Consecutive5xx: ptr[uint32](3)}
			return newModel(calls(svc("frontend", 8080), "reviews", "ratings"), rv, rt), nil
		}},
		{"authz-allow", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Authz = &mesh.Authz{AllowSet: true, Allow: []mesh.AuthzRule{
				{From: []string{"frontend"}, Methods: []string{"GET"}, Paths: []string{"/reviews/*", "/health"}},
				{From: []string{"admin", "batch"}, Paths: []string{"*"}},
				{From: []string{"*"}, Methods: []string{"OPTIONS"}},
				{Paths: []string{"/public/*"}},
			}}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv, svc("admin", 8000), svc("batch", 8001)), nil
		}},
		{"authz-deny", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Authz = &mesh.Authz{Deny: []mesh.AuthzRule{
				{From: []string{"batch"}, Paths: []string{"/admin/*"}},
				{Methods: []string{"DELETE"}},
			}}
			return newModel(calls(svc("frontend", 8080), "reviews"), calls(svc("batch", 8001), "reviews"), rv), nil
		}},
		{"authz-deny-all", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.Authz = &mesh.Authz{AllowSet: true}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"authz-paths", func() (*mesh.Model, Endpoints) {
			// Deny rules match paths and methods whatever their case; rules
			// that name paths bring the ambiguous-path deny policy; the
			// permissive port's plaintext default is "not authenticated".
			rv := svc("reviews", 9080)
			rv.MTLS = mesh.MTLSPermissive
			rv.Authz = &mesh.Authz{
				Deny: []mesh.AuthzRule{
					{Paths: []string{"/admin", "/admin/*"}},
					{From: []string{"frontend"}, Methods: []string{"DELETE"}},
				},
			}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"edge-headers", func() (*mesh.Model, Endpoints) {
			// An edge service's header rules are in its own inbound route
			// configuration (with the routes that carry some, and its rate
			// limited route); ops, which calls it, does not apply them.
			fe := calls(svc("frontend", 8080), "reviews")
			fe.Edge = true
			fe.Headers = &mesh.Headers{
				Request: &mesh.HeaderOps{
					Set:    map[string]string{"x-shop-edge": "frontend"},
					Add:    map[string]string{"x-via": "weft"},
					Remove: []string{"x-weft-internal", "x-shop-user-id"},
				},
				Response: &mesh.HeaderOps{Preset: "security", Remove: []string{"server", "x-powered-by"}},
			}
			fe.Routes = []mesh.Route{
				{Name: "checkout", Match: prefix("/checkout"), RateLimit: &mesh.RateLimit{RequestsPerSecond: 2}},
				{Name: "static", Match: prefix("/static/"), Headers: &mesh.Headers{Response: &mesh.HeaderOps{Set: map[string]string{"cache-control": "max-age=3600"}}}},
				{Name: "pages", Match: prefix("/pages/")},
			}
			rv := svc("reviews", 9080)
			rv.Headers = &mesh.Headers{Request: &mesh.HeaderOps{Add: map[string]string{"x-via": "weft"}}}
			return newModel(fe, calls(svc("ops", 7070), "frontend"), rv), nil
		}},
		{"authz-default", model(
			calls(svc("frontend", 8080), "reviews"),
			calls(svc("batch", 8001), "reviews"),
			svc("reviews", 9080),
			svc("admin", 8000), // calls nothing, is not allowed in
		)},
		{"mtls-strict", model(
			calls(svc("frontend", 8080), "reviews"),
			svc("reviews", 9080),
		)},
		{"mtls-permissive", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.MTLS = mesh.MTLSPermissive
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"mtls-disable", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080)
			rv.MTLS = mesh.MTLSDisable
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
		{"edge", func() (*mesh.Model, Endpoints) {
			fe := calls(svc("frontend", 8080), "reviews")
			fe.Edge = true
			return newModel(fe, svc("reviews", 9080)), nil
		}},
		{"grpc", func() (*mesh.Model, Endpoints) {
			ratings := withPorts(svc("ratings", 50051, "v1", "v2"),
				mesh.Port{Name: "grpc", Port: 50051, Protocol: mesh.GRPC},
				mesh.Port{Name: "metrics", Port: 9102, Protocol: mesh.HTTP})
			ratings.Routes = []mesh.Route{
				{Name: "stream", Match: prefix("/ratings.v1.Ratings/Watch"), To: map[string]int{"v2": 100}, Timeout: dur("0s")},
				{Name: "split", Match: prefix("/"), To: map[string]int{"v1": 50, "v2": 50}},
			}
			ratings.RateLimit = &mesh.RateLimit{RequestsPerSecond: 1000}
			return newModel(calls(svc("reviews", 9080), "ratings"), ratings), nil
		}},
		{"observability", func() (*mesh.Model, Endpoints) {
			// Mesh-wide: access log to stdout with a few fields, tracing to a
			// collector by name at 10%. reviews traces everything and logs
			// to a file; ratings turns the per-request metrics off.
			rv := svc("reviews", 9080, "v1", "v2")
			rv.Observability = &mesh.ServiceObservability{
				AccessLog: &mesh.AccessLog{Enabled: true, Output: "/tmp/weft-access.log"},
			}
			rv.Observability.Tracing = &struct {
				SamplingPercent float64 `json:"samplingPercent"`
			}{SamplingPercent: 100}
			ra := svc("ratings", 9090)
			ra.Observability = &mesh.ServiceObservability{Metrics: ptr(false)}
			fe := calls(svc("frontend", 8080), "reviews", "ratings")
			fe.Edge = true
			m := newModel(fe, rv, ra)
			m.Observability = &mesh.Observability{
				AccessLog: &mesh.AccessLog{Enabled: true, Output: "stdout", Fields: []string{"start_time", "method", "path", "response_code", "duration_ms", "upstream_cluster", "request_id", "source_identity", "destination_identity"}},
				Tracing:   &mesh.Tracing{Collector: "otel-collector.observability:4317", SamplingPercent: 10},
			}
			return m, nil
		}},
		{"observability-ip-collector", func() (*mesh.Model, Endpoints) {
			m := newModel(calls(svc("frontend", 8080), "reviews"), svc("reviews", 9080))
			m.Observability = &mesh.Observability{
				AccessLog: &mesh.AccessLog{Enabled: true, Output: "stderr"},
				Tracing:   &mesh.Tracing{Collector: "127.0.0.1:4317", SamplingPercent: 0.5},
			}
			return m, nil
		}},
		{"tcp", func() (*mesh.Model, Endpoints) {
			db := withPorts(svc("db", 5432), mesh.Port{Name: "postgres", Port: 5432, Protocol: mesh.TCP})
			db.Authz = &mesh.Authz{
				AllowSet: true,
				Allow: []mesh.AuthzRule{
					{From: []string{"reviews"}},
					{From: []string{"frontend"}, Paths: []string{"/never"}}, // HTTP-only: left out on TCP
				},
				Deny: []mesh.AuthzRule{{From: []string{"batch"}, Methods: []string{"DELETE"}}}, // applies to all of batch's connections
			}
			cache := withPorts(svc("cache", 6379), mesh.Port{Name: "redis", Port: 6379, Protocol: mesh.TCP})
			cache.MTLS = mesh.MTLSPermissive
			return newModel(calls(svc("reviews", 9080), "db", "cache"), db, cache, svc("frontend", 8080), svc("batch", 8001)), nil
		}},
		{"scoping", model(
			calls(svc("frontend", 8080), "reviews", "catalog"),
			calls(svc("reviews", 9080, "v1", "v2"), "ratings"),
			svc("catalog", 9090),
			svc("ratings", 9091),
			svc("admin", 8000),
		)},
		{"endpoints", func() (*mesh.Model, Endpoints) {
			rv := withPorts(svc("reviews", 9080, "v1", "v2"),
				mesh.Port{Name: "http", Port: 9080, Protocol: mesh.HTTP},
				mesh.Port{Name: "grpc", Port: 9081, Protocol: mesh.GRPC})
			m := newModel(calls(svc("frontend", 8080), "reviews"), rv)
			// Out of order, duplicated, port 0 = the cluster's service port;
			// v2 missing: no endpoints.
			eps := Endpoints{"reviews": {"v1": {
				{Host: "10.1.0.7", Port: 0}, {Host: "10.1.0.5", Port: 0}, {Host: "10.1.0.7", Port: 0}, {Host: "10.1.0.6", Port: 19080},
			}}}
			return m, eps
		}},
		{"static-dns", func() (*mesh.Model, Endpoints) {
			rv := svc("reviews", 9080, "v1", "v2")
			rv.Versions["v1"].Endpoints = []string{"localhost:19080", "127.0.0.1:19081"}
			rv.Versions["v2"].Endpoints = []string{"reviews-v2.vm.internal:9080"}
			return newModel(calls(svc("frontend", 8080), "reviews"), rv), nil
		}},
	}
}

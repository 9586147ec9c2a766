package compiler

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// The acceptance gate: Compile refuses to return configuration that Envoy
// would reject. It runs in two layers:
//
//   - checks of the model values (this file), which know the CUE path of
//     every value and so report the exact file:line:column;
//   - checks of every emitted resource (accept_resources.go): the proto
//     constraints of go-control-plane's generated ValidateAll (on every
//     resource and on every config packed in an Any), RE2 on every regex,
//     Envoy's header rules on every header mutation. They are the
//     backstop: a finding there is located through Class.Provenance.
//
// Both return schema.Errors, like the loader, so that weft vet, weft build,
// weft up and the controller report them in one way.

// gateTimer, set by BenchmarkGate only, is called when a run of the gate
// starts and returns the function to call when it ends. The compiler itself
// reads no clock.
var gateTimer func() (stop func())

func timeGate() func() {
	if gateTimer == nil {
		return func() {}
	}
	return gateTimer()
}

// acceptModel checks the values of the model that Envoy constrains beyond
// what the schema says, on the resolved services.
func (c *compilation) acceptModel() schema.Errors {
	a := &modelChecker{m: c.m, regexes: &c.regexes}
	d := c.m.Defaults
	a.duration("mesh.defaults.timeout", &d.Timeout)
	a.duration("mesh.defaults.retries.perTryTimeout", d.Retries.PerTryTimeout)
	a.outlierDetection("mesh.defaults.outlierDetection", d.OutlierDetection)
	for _, name := range c.m.ServiceNames() {
		s := c.svcs[name]
		if s == nil {
			continue
		}
		sp := mesh.ServicePath(name)
		a.headers(sp+".headers", s.Headers)
		a.rateLimit(sp+".rateLimit", s.RateLimit)
		// Values a service inherits are reported once, at the defaults.
		if a.own(sp+".timeout", s.Timeout, &d.Timeout) {
			a.duration(sp+".timeout", s.Timeout)
		}
		if s.Retries != nil && a.own(sp+".retries.perTryTimeout", s.Retries.PerTryTimeout, d.Retries.PerTryTimeout) {
			a.duration(sp+".retries.perTryTimeout", s.Retries.PerTryTimeout)
		}
		if s.OutlierDetection != d.OutlierDetection {
			a.outlierDetection(sp+".outlierDetection", s.OutlierDetection)
		}
		for _, r := range s.Routes {
			a.route(mesh.RoutePath(name, r.Name), r)
		}
	}
	return a.out
}

type modelChecker struct {
	m       *mesh.Model
	regexes *regexCache
	out     schema.Errors
}

func (a *modelChecker) add(path string, p *problem) {
	if p == nil {
		return
	}
	a.out = append(a.out, &schema.Error{Pos: a.m.Positions.Lookup(path), Path: path, Msg: p.msg, Fix: p.fix})
}

func (a *modelChecker) route(path string, r mesh.Route) {
	a.match(path+".match", r.Match)
	a.headers(path+".headers", r.Headers)
	a.rateLimit(path+".rateLimit", r.RateLimit)
	a.duration(path+".timeout", r.Timeout)
	if r.Retries != nil {
		a.duration(path+".retries.perTryTimeout", r.Retries.PerTryTimeout)
	}
	if r.Fault != nil && r.Fault.Delay != nil {
		dp := path + ".fault.delay.duration"
		if r.Fault.Delay.Duration.Duration <= 0 {
			a.add(dp, &problem{"a fault delay of 0 (Envoy requires a delay greater than 0)",
				`give a positive duration such as "100ms", or remove the delay`})
		}
		a.duration(dp, &r.Fault.Delay.Duration)
	}
}

// maxDuration is the longest duration Envoy accepts where it works in
// milliseconds (timeouts, delays, intervals): its seconds must be below
// 9223372036, the int64 nanoseconds limit (measured: 9223372035.999999999s
// is accepted, 9223372036s is "Duration out-of-range").
const maxDuration = 9223372036*time.Second - 1

func (a *modelChecker) duration(path string, d *mesh.Duration) {
	if d != nil && d.Duration > maxDuration {
		a.add(path, &problem{fmt.Sprintf("a duration of %s; Envoy accepts less than 9223372036s (about 292 years)", d.Duration),
			`write a shorter duration, such as "8760h" for a year`})
	}
}

// own reports whether a service's value is its own rather than the
// mesh default: written in the service, or different from the default.
func (a *modelChecker) own(path string, v, def *mesh.Duration) bool {
	if _, written := a.m.Positions[path]; written {
		return true
	}
	if v == nil || def == nil {
		return v != def
	}
	return v.Duration != def.Duration
}

func (a *modelChecker) match(path string, m mesh.Match) {
	if m.Path != nil && m.Path.Regex != nil {
		a.add(path+".path.regex", a.regexes.problem(*m.Path.Regex))
	}
	for _, name := range mesh.SortedKeys(m.Headers) {
		hp := path + ".headers." + mesh.Label(name)
		a.add(hp, matchNameProblem(name))
		sm := m.Headers[name]
		switch {
		case sm.Regex != nil:
			a.add(hp+".regex", a.regexes.problem(*sm.Regex))
		case sm.Prefix != nil && *sm.Prefix == "":
			a.add(hp+".prefix", &problem{"an empty prefix (Envoy requires at least one character)",
				"give a prefix, or write present: true to match any value"})
		}
	}
	if len(m.Methods) > 1 {
		// The compiler's own regex over the methods.
		if p := a.regexes.problem(methodsRegex(m.Methods)); p != nil {
			a.add(path+".methods", &problem{"these methods make a regex Envoy rejects: " + p.msg, "list each method once"})
		}
	}
}

// headers checks header edits: names Envoy lets a route change, values it
// accepts, and no name twice in one list (names are case-insensitive, and
// which of two values wins would be arbitrary).
func (a *modelChecker) headers(path string, h *mesh.Headers) {
	if h == nil {
		return
	}
	for _, dir := range []struct {
		name string
		ops  *mesh.HeaderOps
	}{{"request", h.Request}, {"response", h.Response}} {
		if dir.ops == nil {
			continue
		}
		dp := path + "." + dir.name
		for _, kind := range []struct {
			name string
			kv   map[string]string
		}{{"set", dir.ops.Set}, {"add", dir.ops.Add}} {
			seen := map[string]string{}
			for _, k := range mesh.SortedKeys(kind.kv) {
				kp := dp + "." + kind.name + "." + mesh.Label(k)
				a.add(kp, mutationNameProblem(k))
				a.add(kp, headerValueProblem(kind.kv[k]))
				lower := strings.ToLower(k)
				if other, dup := seen[lower]; dup {
					a.add(kp, &problem{fmt.Sprintf("header %s is also written as %s: header names ignore case, so one would overwrite the other", k, other),
						"keep one of them"})
				}
				seen[lower] = k
			}
		}
		for i, k := range dir.ops.Remove {
			a.add(fmt.Sprintf("%s.remove[%d]", dp, i), mutationNameProblem(k))
		}
	}
}

func (a *modelChecker) rateLimit(path string, rl *mesh.RateLimit) {
	if rl == nil {
		return
	}
	if rl.RequestsPerSecond > math.MaxUint32 {
		a.add(path+".requestsPerSecond", &problem{fmt.Sprintf("%d requests per second is more than Envoy's token bucket holds (%d)", rl.RequestsPerSecond, uint32(math.MaxUint32)),
			"use a smaller limit, or remove the rate limit"})
	}
	if rl.Burst > math.MaxUint32 {
		a.add(path+".burst", &problem{fmt.Sprintf("a burst of %d is more than Envoy's token bucket holds (%d)", rl.Burst, uint32(math.MaxUint32)),
			"use a smaller burst"})
	}
}

func (a *modelChecker) outlierDetection(path string, od *mesh.OutlierDetection) {
	if od == nil {
		return
	}
	for _, d := range []struct {
		field string
		v     *mesh.Duration
	}{{"interval", od.Interval}, {"baseEjectionTime", od.BaseEjectionTime}} {
		if d.v != nil && d.v.Duration <= 0 {
			a.add(path+"."+d.field, &problem{fmt.Sprintf("%s of 0 (Envoy requires a duration greater than 0)", d.field),
				`give a positive duration such as "10s", or leave it out for Envoy's default`})
		}
		a.duration(path+"."+d.field, d.v)
	}
}

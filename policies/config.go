package policies

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Config is data.weft.config: the default bundle's data.json with the
// data files of the mesh repository's policies/ folder and of --policy
// folders merged over it (objects merge key by key, anything else is
// replaced). Rules read their own settings from it in Rego
// (data.weft.config.rules.<rule>); the engine reads the keys below, which
// apply to every rule, the team's own included.
type Config struct {
	Rules      map[string]RuleConfig
	Exceptions []Exception
	// Raw is the whole configuration, as the rules see it.
	Raw map[string]any
}

// RuleConfig are the settings every rule has (data.weft.config.rules.<id>).
// Environment names are those of the repository's environments, "base"
// for the base alone, or "*" for all.
type RuleConfig struct {
	// Enabled false turns the rule off everywhere (default true).
	Enabled bool
	// Only, when set, lists the environments where the rule runs.
	Only []string
	// Skip lists environments where it does not run.
	Skip []string
	// Warn lists environments where its denies are reported as warns.
	Warn []string
	// Raw is the rule's whole configuration object.
	Raw map[string]any
}

// Exception excuses one rule for one service: its denies there are
// reported as warns carrying the reason, in the listed environments (all
// when none is listed).
type Exception struct {
	Rule         string   `json:"rule"`
	Service      string   `json:"service"`
	Environments []string `json:"environments,omitempty"`
	Reason       string   `json:"reason"`
}

// runsIn reports whether the rule is evaluated in env.
func (c RuleConfig) runsIn(env string) bool {
	if !c.Enabled || matches(c.Skip, env) {
		return false
	}
	return c.Only == nil || matches(c.Only, env)
}

func matches(envs []string, env string) bool {
	return slices.Contains(envs, env) || slices.Contains(envs, "*")
}

// rule returns the configuration of a rule (the defaults when it has none).
func (c *Config) rule(id string) RuleConfig {
	if rc, ok := c.Rules[id]; ok {
		return rc
	}
	return RuleConfig{Enabled: true}
}

// excuse returns the exception that covers a finding, if any.
func (c *Config) excuse(f Finding) (Exception, bool) {
	svc := f.Service()
	for _, ex := range c.Exceptions {
		if ex.Rule == f.Rule && ex.Service == svc && (ex.Environments == nil || matches(ex.Environments, f.Environment)) {
			return ex, true
		}
	}
	return Exception{}, false
}

// apply turns a rule's raw findings into what is reported in env: denies
// downgraded where the configuration says warn, and excused denies
// reported as warns with the exception's reason.
func (c *Config) apply(fs []Finding) []Finding {
	for i := range fs {
		f := &fs[i]
		if f.Severity != Deny {
			continue
		}
		if matches(c.rule(f.Rule).Warn, f.Environment) {
			f.Severity = Warn
		}
		if ex, ok := c.excuse(*f); ok {
			f.Severity, f.Excused = Warn, ex.Reason
		}
	}
	return fs
}

// parseConfig reads data.weft.config and checks it against the rules
// that exist: a setting or an exception for a rule that does not exist is
// an error (a typo would otherwise silently excuse nothing).
func parseConfig(data map[string]any, rules map[string]*Rule) (*Config, Errors) {
	c := &Config{Rules: map[string]RuleConfig{}, Raw: map[string]any{}}
	var errs Errors
	weft, _ := data["weft"].(map[string]any)
	raw, ok := weft["config"]
	if !ok {
		return c, nil
	}
	if c.Raw, ok = raw.(map[string]any); !ok {
		return c, Errors{errorf("data.weft.config: is %s, want an object", kind(raw))}
	}
	for key := range c.Raw {
		if key != "rules" && key != "exceptions" {
			errs = append(errs, errorf("data.weft.config.%s: unknown setting (known: rules, exceptions)", key))
		}
	}
	if rs, ok := c.Raw["rules"]; ok {
		rm, ok := rs.(map[string]any)
		if !ok {
			errs = append(errs, errorf("data.weft.config.rules: is %s, want an object of rule settings", kind(rs)))
		}
		for _, id := range sortedKeys(rm) {
			at := "data.weft.config.rules." + id
			if rules[id] == nil {
				errs = append(errs, errorf("%s: no rule %q is loaded (rules: %s)", at, id, ruleList(rules)))
				continue
			}
			obj, ok := rm[id].(map[string]any)
			if !ok {
				errs = append(errs, errorf("%s: is %s, want an object", at, kind(rm[id])))
				continue
			}
			rc := RuleConfig{Enabled: true, Raw: obj}
			if v, ok := obj["enabled"]; ok {
				if rc.Enabled, ok = v.(bool); !ok {
					errs = append(errs, errorf("%s.enabled: is %s, want true or false", at, kind(v)))
				}
			}
			rc.Only, errs = stringList(obj, "only", at, errs)
			rc.Skip, errs = stringList(obj, "skip", at, errs)
			rc.Warn, errs = stringList(obj, "warn", at, errs)
			c.Rules[id] = rc
		}
	}
	if xs, ok := c.Raw["exceptions"]; ok {
		list, ok := xs.([]any)
		if !ok && xs != nil {
			errs = append(errs, errorf("data.weft.config.exceptions: is %s, want a list", kind(xs)))
		}
		for i, x := range list {
			at := fmt.Sprintf("data.weft.config.exceptions[%d]", i)
			obj, ok := x.(map[string]any)
			if !ok {
				errs = append(errs, errorf("%s: is %s, want {rule, service, environments, reason}", at, kind(x)))
				continue
			}
			var ex Exception
			for key, v := range obj {
				switch key {
				case "rule", "service", "reason":
					s, ok := v.(string)
					if !ok || strings.TrimSpace(s) == "" {
						errs = append(errs, errorf("%s.%s: want a non-empty string", at, key))
					}
					switch key {
					case "rule":
						ex.Rule = s
					case "service":
						ex.Service = s
					case "reason":
						ex.Reason = s
					}
				case "environments":
					ex.Environments, errs = stringList(obj, key, at, errs)
				default:
					errs = append(errs, errorf("%s.%s: unknown field (known: rule, service, environments, reason)", at, key))
				}
			}
			for _, key := range []string{"rule", "service", "reason"} {
				if _, ok := obj[key]; !ok {
					errs = append(errs, errorf("%s: %s is required (an exception says which rule, for which service, and why)", at, key))
				}
			}
			if ex.Rule != "" && rules[ex.Rule] == nil {
				errs = append(errs, errorf("%s.rule: no rule %q is loaded (rules: %s)", at, ex.Rule, ruleList(rules)))
			}
			c.Exceptions = append(c.Exceptions, ex)
		}
	}
	return c, errs
}

func stringList(obj map[string]any, key, at string, errs Errors) ([]string, Errors) {
	v, ok := obj[key]
	if !ok {
		return nil, errs
	}
	list, ok := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, isString := x.(string)
		if !isString {
			ok = false
			break
		}
		out = append(out, s)
	}
	if !ok {
		return nil, append(errs, errorf("%s.%s: is %s, want a list of environment names", at, key, kind(v)))
	}
	return out, errs
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}

func ruleList(rules map[string]*Rule) string {
	return strings.Join(sortedKeys(rules), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// mergeData merges user data over the bundle's: objects key by key,
// anything else (lists included) replaced by the user's value.
func mergeData(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bo, bok := out[k].(map[string]any)
		oo, ook := v.(map[string]any)
		if bok && ook {
			out[k] = mergeData(bo, oo)
		} else {
			out[k] = v
		}
	}
	return out
}

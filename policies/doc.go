// Package policies is weft's policy gate (stub while it is being written).
package policies

import _ "github.com/open-policy-agent/opa/v1/rego"

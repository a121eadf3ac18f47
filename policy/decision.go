package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/sallyport/sallyport/gateway"
)

// Eval evaluates the set's decision for input and returns it. It never
// fails: an undefined decision, an evaluation error, a panic, a result of
// the wrong shape or a deadline passed in ctx each give a denial whose
// reason says which. The decision's PolicyVersion is the set's.
func (s *Set) Eval(ctx context.Context, input ast.Value) *gateway.Decision {
	v, err := s.eval(ctx, input)
	var d *gateway.Decision
	if err == nil {
		d, err = parseDecision(v)
	}
	if err != nil {
		d = failed(err)
	}
	d.PolicyVersion = s.version
	return d
}

// evalError is an evaluation failure whose detail (OPA's error text) may
// quote input or data: the client gets Short only.
type evalError struct{ short, detail string }

func (e *evalError) Error() string { return e.short + ": " + e.detail }

// failed is the denial an evaluation failure gives.
func failed(err error) *gateway.Decision {
	d := &gateway.Decision{Reasons: []string{err.Error()}, Rules: []string{RuleError}}
	var ee *evalError
	if errors.As(err, &ee) {
		d.Reasons, d.Detail = []string{ee.short}, ee.detail
	}
	return d
}

// RuleError is the rule id of denials the evaluation itself caused.
const RuleError = "sallyport/policy-error"

// eval runs the prepared query; a panic inside OPA becomes an error.
func (s *Set) eval(ctx context.Context, input ast.Value) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &evalError{"policy evaluation failed", fmt.Sprintf("panic: %v", r)}
		}
	}()
	rs, err := s.query.Eval(ctx, rego.EvalParsedInput(input))
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
			return nil, errors.New("policy evaluation exceeded its deadline")
		case ctx.Err() != nil:
			return nil, errors.New("policy evaluation was cancelled")
		}
		return nil, &evalError{"policy evaluation failed", err.Error()}
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, errors.New("policy decision is undefined")
	}
	if len(rs) > 1 {
		return nil, errors.New("policy decision has more than one value")
	}
	return rs[0].Expressions[0].Value, nil
}

// parseDecision reads a decision document strictly: a known key with a
// value of the wrong type, or an unknown key, is an error (a misspelt
// "require_aproval" must not pass as an allow).
func parseDecision(v any) (*gateway.Decision, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("policy decision is %s, not an object", typeName(v))
	}
	d := &gateway.Decision{}
	allow, ok := obj["allow"].(bool)
	if !ok {
		if _, present := obj["allow"]; present {
			return nil, fmt.Errorf("policy decision: allow is %s, not a boolean", typeName(obj["allow"]))
		}
		return nil, errors.New("policy decision has no allow")
	}
	var denyReasons []string
	for k, val := range obj {
		var err error
		switch k {
		case "allow":
		case "deny_reasons":
			denyReasons, err = stringList(val)
		case "reasons":
			d.Reasons, err = stringList(val)
		case "rules":
			d.Rules, err = stringList(val)
		case "redact":
			d.Redact, err = stringList(val)
			for _, p := range d.Redact {
				if err == nil {
					_, err = gateway.ParsePath(p)
				}
			}
		case "require_approval":
			if val != nil {
				d.Approval, err = parseApproval(val)
			}
		default:
			return nil, fmt.Errorf("policy decision has an unknown key %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("policy decision: %s: %w", k, err)
		}
	}
	d.Allow = allow && len(denyReasons) == 0
	if d.Allow && d.Approval != nil {
		reason := "approval required"
		if d.Approval.Reason != "" {
			reason += ": " + d.Approval.Reason
		}
		d.Reasons = append(d.Reasons, reason)
	}
	if !d.Allow {
		d.Approval, d.Redact = nil, nil
		if len(denyReasons) > 0 {
			d.Reasons = denyReasons
		}
	}
	slices.Sort(d.Rules)
	d.Rules = slices.Compact(d.Rules)
	return d, nil
}

func parseApproval(v any) (*gateway.ApprovalRequest, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("is %s, not an object", typeName(v))
	}
	a := &gateway.ApprovalRequest{}
	for k, val := range obj {
		switch k {
		case "reason", "reviewers":
			s, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("%s is %s, not a string", k, typeName(val))
			}
			if k == "reason" {
				a.Reason = s
			} else {
				a.Reviewers = s
			}
		case "timeout":
			s, ok := val.(string)
			if !ok {
				return nil, fmt.Errorf("timeout is %s, not a duration string such as \"10m\"", typeName(val))
			}
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("timeout %q is not a positive duration such as \"10m\"", s)
			}
			a.Timeout = d
		case "quorum":
			n, ok := intValue(val)
			if !ok || n < 1 || n > 10 {
				return nil, fmt.Errorf("quorum must be a whole number from 1 to 10, not %v", val)
			}
			a.Quorum = n
		case "mode":
			s, ok := val.(string)
			if !ok || s != gateway.ApprovalModeHold && s != gateway.ApprovalModeRetry {
				return nil, fmt.Errorf("mode must be %q or %q, not %v", gateway.ApprovalModeHold, gateway.ApprovalModeRetry, val)
			}
			a.Mode = s
		default:
			return nil, fmt.Errorf("unknown key %q", k)
		}
	}
	return a, nil
}

// intValue reads a whole number as OPA returns it (json.Number, or a
// float64 or int from other decoders).
func intValue(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case float64:
		return int(n), n == float64(int(n))
	case int:
		return n, true
	case int64:
		return int(n), true
	}
	return 0, false
}

// stringList reads an array (or a set, which OPA returns as an array) of
// strings.
func stringList(v any) ([]string, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("is %s, not an array of strings", typeName(v))
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("holds %s, not only strings", typeName(e))
		}
		out = append(out, s)
	}
	return out, nil
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "a number"
}

// EvalDocument evaluates the set on doc, an input document as decoded
// JSON, and returns the decision document as policy produced it (nil when
// it failed or was undefined) with the decision read from it, as Eval
// would.
func (s *Set) EvalDocument(ctx context.Context, doc ast.Value) (raw any, d *gateway.Decision) {
	raw, err := s.eval(ctx, doc)
	if err == nil {
		d, err = parseDecision(raw)
	}
	if err != nil {
		d = failed(err)
	}
	d.PolicyVersion = s.version
	return raw, d
}

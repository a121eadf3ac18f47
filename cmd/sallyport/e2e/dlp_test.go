package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"hash/crc32"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway/config"
)

// These tests hold the DLP stage to its promises through the real binary:
// what a backend returns reaches the client with its PII and secrets
// redacted, a secret in a tool call's arguments never reaches the backend,
// the audit log records what was found and where but never the values,
// policy sees the findings, an allow rule lets one exact value through, and
// `sallyport dlp scan` finds what the gateway would.

// ana is cus_1001 of the demo server's data set (cmd/sallyport/demo).
const (
	anaID    = "cus_1001"
	anaName  = "Ana Ruiz"
	anaEmail = "ana.ruiz@example.com"
	anaPhone = "+12025550143"
	anaCard  = "4111111111111111"
	anaAddr  = "1200 Harbor Way, Oakland, CA 94607, US"
	benEmail = "ben.okafor@example.net" // cus_1002
)

// demoDLPRules are the DLP rules of the built-in demo configuration
// (config.Demo), so that these tests follow them.
func demoDLPRules(t testing.TB) []dlpRule {
	t.Helper()
	var rules []dlpRule
	for _, r := range config.Demo("", "").DLP.Rules {
		rules = append(rules, dlpRule{Detectors: r.Detectors, Direction: r.Direction, Backends: r.Backends,
			Tools: r.Tools, Fields: r.Fields, Values: r.Values, Patterns: r.Patterns, Action: r.Action})
	}
	if len(rules) == 0 {
		t.Fatal("config.Demo has no DLP rules")
	}
	return rules
}

// auditFinding is one object of an audit row's findings column.
type auditFinding struct {
	Detector string `json:"detector"`
	Path     string `json:"path"`
	Offset   int    `json:"offset"`
	Length   int    `json:"length"`
	Encoding string `json:"encoding"`
	InKey    bool   `json:"in_key"`
	Action   string `json:"action"`
}

// rowFindings parses r's findings column; every finding must have a
// detector, a path, a span and an action, and nothing else.
func rowFindings(t testing.TB, r auditRow) []auditFinding {
	t.Helper()
	if r.Findings == "" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(r.Findings))
	dec.DisallowUnknownFields()
	var fs []auditFinding
	if err := dec.Decode(&fs); err != nil {
		t.Fatalf("row %s: findings %q: %v", r, r.Findings, err)
	}
	for _, f := range fs {
		if f.Detector == "" || f.Path == "" || f.Length <= 0 || f.Action == "" {
			t.Errorf("row %s: incomplete finding %+v", r, f)
		}
	}
	return fs
}

// hasFinding reports whether fs holds a finding of detector at path with
// action.
func hasFinding(fs []auditFinding, detector, path, action string) bool {
	return slices.ContainsFunc(fs, func(f auditFinding) bool {
		return f.Detector == detector && f.Path == path && f.Action == action
	})
}

// toolResult decodes a tools/call result: its text and structured content.
func toolResult(t testing.TB, m rpcMessage) (text string, structured map[string]any) {
	t.Helper()
	var res struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		StructuredContent map[string]any `json:"structuredContent"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil {
		t.Fatalf("tools/call result: %v: %s", err, m.Result)
	}
	var b strings.Builder
	for _, c := range res.Content {
		b.WriteString(c.Text)
	}
	return b.String(), res.StructuredContent
}

// wantBlocked checks that r is a DLP refusal naming each of want, and
// that none of secrets is in the response.
func wantBlocked(t testing.TB, what string, r rawResponse, want []string, secrets ...string) {
	t.Helper()
	e := r.rpcErr()
	if e == nil || e.Code != -32003 || !strings.HasPrefix(e.Message, "blocked by DLP: ") {
		t.Errorf("%s: HTTP %d: %s; want error -32003 \"blocked by DLP: ...\"", what, r.Status, r.Body)
		return
	}
	for _, w := range want {
		if !strings.Contains(e.Message, w) {
			t.Errorf("%s: the refusal %q does not name %q", what, e.Message, w)
		}
	}
	for _, s := range secrets {
		if bytes.Contains(r.Body, []byte(s)) {
			t.Errorf("%s: the response holds the secret: %s", what, r.Body)
		}
	}
}

// awsKey returns a well-formed AWS access key id: AKIA and 16 characters
// of [A-Z2-7], not one of the documentation's EXAMPLE keys.
func awsKey(t testing.TB) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	for {
		b := []byte("AKIA")
		for range 16 {
			b = append(b, alphabet[randInt(t, len(alphabet))])
		}
		if k := string(b); !strings.Contains(k, "EXAMPLE") {
			return k
		}
	}
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// githubPAT returns a GitHub personal access token with a valid checksum:
// ghp_, 30 random base62 characters, and the CRC-32 (IEEE) of those 30 in
// base62, zero-padded to 6.
func githubPAT(t testing.TB) string {
	body := make([]byte, 30)
	for i := range body {
		body[i] = base62[randInt(t, len(base62))]
	}
	sum := crc32.ChecksumIEEE(body)
	var check []byte
	for n := sum; n > 0; n /= 62 {
		check = append([]byte{base62[n%62]}, check...)
	}
	for len(check) < 6 {
		check = append([]byte{'0'}, check...)
	}
	return "ghp_" + string(body) + string(check)
}

func randInt(t testing.TB, n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// privateKeyPEM returns a fresh EC private key in PEM.
func privateKeyPEM(t testing.TB) string {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

// noneInFiles fails the test if any of values is in the gateway's
// database files (read raw, WAL included) or its log.
func noneInFiles(t testing.TB, g *gateway, values ...string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(g.dbPath() + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			if bytes.Contains(data, []byte(v)) {
				t.Errorf("%q is in %s", v, filepath.Base(g.dbPath()+suffix))
			}
		}
	}
	for _, v := range values {
		if strings.Contains(g.proc.stderr.String(), v) {
			t.Errorf("%q is in the gateway's log", v)
		}
	}
}

// TestDLPRedactsTheDemoCustomerRecord: with the demo configuration's DLP
// rule, lookup_customer's result reaches the client with the email, phone
// and card number replaced, in the text and in the structured content, and
// the audit row of that result says what was found where, never the
// values.
func TestDLPRedactsTheDemoCustomerRecord(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
	cfg.DLP = &dlpConfig{Rules: demoDLPRules(t)}
	g := newGateway(t, cfg)
	alice := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, alice)

	text, sc := toolResult(t, mustRawCall(t, s, 2, "demo__lookup_customer", map[string]any{"customer_id": anaID}))
	for _, want := range []string{"[REDACTED:EMAIL_ADDRESS]", "[REDACTED:PHONE_NUMBER]", "[REDACTED:CREDIT_CARD]", anaName, anaAddr, anaID} {
		if !strings.Contains(text, want) {
			t.Errorf("the result text lacks %q:\n%s", want, text)
		}
	}
	for _, v := range []string{anaEmail, anaPhone, anaCard, "1111"} {
		if strings.Contains(text, v) {
			t.Errorf("the result text holds %q:\n%s", v, text)
		}
	}
	for k, want := range map[string]string{
		"email": "[REDACTED:EMAIL_ADDRESS]", "phone": "[REDACTED:PHONE_NUMBER]", "card_number": "[REDACTED:CREDIT_CARD]",
		"name": anaName, "address": anaAddr, "id": anaID, "plan": "pro",
	} {
		if sc[k] != want {
			t.Errorf("structuredContent.%s = %v; want %q", k, sc[k], want)
		}
	}

	g.proc.stop(t)
	noneInFiles(t, g, anaEmail, anaPhone, anaCard)
	out := mustSallyport(t, "audit", "export", "-c", g.cfgPath, "--format", "jsonl")
	for _, v := range []string{anaEmail, anaPhone, anaCard} {
		if strings.Contains(out, v) {
			t.Errorf("the audit export holds %q", v)
		}
	}
	var result *auditRow
	rows := parseAuditJSONL(t, []byte(out))
	for i, r := range rows {
		if r.Kind == "result" && r.Method == "tools/call" && r.Target == "lookup_customer" {
			result = &rows[i]
		}
	}
	if result == nil {
		t.Fatalf("no result row of the lookup_customer call among %d rows", len(rows))
	}
	fs := rowFindings(t, *result)
	for _, c := range []struct{ detector, path string }{
		{"EMAIL_ADDRESS", "result.structuredContent.email"},
		{"PHONE_NUMBER", "result.structuredContent.phone"},
		{"CREDIT_CARD", "result.structuredContent.card_number"},
		{"EMAIL_ADDRESS", "result.content[0].text"},
		{"PHONE_NUMBER", "result.content[0].text"},
		{"CREDIT_CARD", "result.content[0].text"},
	} {
		if !hasFinding(fs, c.detector, c.path, "redact") {
			t.Errorf("the result row's findings lack %s at %s (redact): %s", c.detector, c.path, result.Findings)
		}
	}
	for _, f := range fs {
		if f.Path == "result.structuredContent.email" && f.Length != len(anaEmail) {
			t.Errorf("the email finding spans %d bytes; want %d", f.Length, len(anaEmail))
		}
	}
	if result.Outcome != "ok" || result.Decision != "allow" {
		t.Errorf("result row: outcome %q decision %q; want ok and allow", result.Outcome, result.Decision)
	}
}

// TestDLPBlocksASecretInToolArguments: a tool call whose arguments carry an
// AWS access key, plain or base64-encoded, is refused with an error that
// names the detector and the argument, not the key, and the backend never
// runs the tool.
func TestDLPBlocksASecretInToolArguments(t *testing.T) {
	t.Parallel()
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	demo := demoStdio("demo", t.TempDir(), "shared")
	demo.Args = append(demo.Args, "--outbox", outbox)
	g := newGateway(t, baseConfig(demo))
	alice := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, alice)

	email := func(subject, body string) map[string]any {
		return map[string]any{"to": []string{"bob@example.com"}, "subject": subject, "body": body}
	}
	// The outbox works: a clean email lands in it.
	mustRawCall(t, s, 2, "demo__send_email", email("clean", "nothing to see"))
	if got := outboxSubjects(t, outbox); !slices.Equal(got, []string{"clean"}) {
		t.Fatalf("outbox subjects %v after a clean email; want [clean]", got)
	}

	key := awsKey(t)
	encoded := base64.StdEncoding.EncodeToString([]byte("aws_access_key_id = " + key + "\n"))
	cases := []struct {
		name, subject, body string
		want                string
		secret              string // as sent
		encoding            string
	}{
		{"plain", "plain key", "deploy with AWS_ACCESS_KEY_ID " + key + " please",
			"aws-access-token in params.arguments.body", key, ""},
		{"base64-encoded", "encoded key", "config blob: " + encoded,
			"aws-access-token in params.arguments.body (base64-encoded)", encoded, "base64"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantBlocked(t, c.name, s.call(t, 10+i, "demo__send_email", email(c.subject, c.body)), []string{c.want}, key, c.secret)
		})
	}
	// The same session goes on working.
	mustRawCall(t, s, 20, "demo__send_email", email("after", "still fine"))
	if got := outboxSubjects(t, outbox); !slices.Equal(got, []string{"clean", "after"}) {
		t.Errorf("outbox subjects %v; want [clean after]: a blocked email reached the backend", got)
	}

	g.proc.stop(t)
	rows := exportRows(t, "-c", g.cfgPath)
	for i, c := range cases {
		var req *auditRow
		for j, r := range rows {
			if r.Kind == "request" && r.Method == "tools/call" && r.MessageID == itoa(10+i) {
				req = &rows[j]
			}
		}
		if req == nil {
			t.Errorf("%s: no request row for message id %d", c.name, 10+i)
			continue
		}
		if req.Outcome != "refused" || req.Decision != "deny" || req.ErrorCode != -32003 || !strings.HasPrefix(req.Error, "blocked by DLP: ") {
			t.Errorf("%s: request row %s: outcome %q decision %q error %d %q; want refused, deny, -32003 blocked by DLP",
				c.name, req, req.Outcome, req.Decision, req.ErrorCode, req.Error)
		}
		if !slices.ContainsFunc(req.Reasons, func(r string) bool { return strings.HasPrefix(r, "blocked by DLP: ") }) {
			t.Errorf("%s: request row reasons %q; want DLP's refusal", c.name, req.Reasons)
		}
		if req.PolicyVersion != "" || len(req.Rules) != 0 {
			t.Errorf("%s: request row %s: policy version %q rules %v; want none (policy never saw it)", c.name, req, req.PolicyVersion, req.Rules)
		}
		for _, v := range []string{key, c.secret} {
			if strings.Contains(req.Error, v) || strings.Contains(strings.Join(req.Reasons, " "), v) || strings.Contains(req.Findings, v) {
				t.Errorf("%s: the request row's error, reasons or findings hold the key: %s", c.name, req)
			}
		}
		fs := rowFindings(t, *req)
		if !slices.ContainsFunc(fs, func(f auditFinding) bool {
			return f.Detector == "aws-access-token" && f.Path == "params.arguments.body" && f.Action == "block" && f.Encoding == c.encoding
		}) {
			t.Errorf("%s: request row findings %s; want aws-access-token at params.arguments.body, block, encoding %q", c.name, req.Findings, c.encoding)
		}
		for _, r := range rows {
			if r.Ref == req.Seq {
				t.Errorf("%s: row %s answers the refused request: it reached the backend", c.name, r)
			}
		}
		// The row keeps the arguments with the blocked finding redacted:
		// the log never holds what DLP refused to forward.
		if strings.Contains(req.Arguments, c.secret) || !strings.Contains(req.Arguments, "[REDACTED:aws-access-token]") {
			t.Errorf("%s: the refused request's arguments %s; want the key redacted", c.name, req.Arguments)
		}
	}
	if log := g.proc.stderr.String(); strings.Contains(log, key) || strings.Contains(log, encoded) {
		t.Error("the gateway's log holds the key")
	}
}

// TestDLPRedactsASecretAnNPMServerReturns: server-everything's get-env
// returns its environment, which holds a GitHub token; the client gets it
// as [REDACTED:github-pat] and the other values intact.
func TestDLPRedactsASecretAnNPMServerReturns(t *testing.T) {
	t.Parallel()
	needNode(t)
	pat := githubPAT(t)
	every := everythingStdio("every", "session")
	every.Env = map[string]string{
		"NODE_OPTIONS":           every.Env["NODE_OPTIONS"],
		"GITHUB_TOKEN":           pat,
		"SALLYPORT_E2E_PLAIN":    "an ordinary value 42",
		"SALLYPORT_E2E_ENDPOINT": "https://api.example.invalid/v1",
	}
	g := newGateway(t, baseConfig(every))
	alice := g.token("alice", "ops")
	g.serve()
	s := openRawSession(t, g.URL, alice)

	text, _ := toolResult(t, mustRawCall(t, s, 2, "every__get-env", map[string]any{}))
	var env map[string]string
	if err := json.Unmarshal([]byte(text), &env); err != nil {
		t.Fatalf("get-env did not return the environment as JSON: %v\n%s", err, text)
	}
	if strings.Contains(text, pat) || strings.Contains(text, pat[4:34]) {
		t.Errorf("the token reached the client:\n%s", text)
	}
	if env["GITHUB_TOKEN"] != "[REDACTED:github-pat]" {
		t.Errorf("GITHUB_TOKEN = %q; want [REDACTED:github-pat]", env["GITHUB_TOKEN"])
	}
	for k, want := range map[string]string{
		"SALLYPORT_E2E_PLAIN":    "an ordinary value 42",
		"SALLYPORT_E2E_ENDPOINT": "https://api.example.invalid/v1",
		"NODE_OPTIONS":           every.Env["NODE_OPTIONS"],
		envMarker:                g.marker,
	} {
		if env[k] != want {
			t.Errorf("%s = %q; want %q, untouched", k, env[k], want)
		}
	}
	for k, v := range env {
		if strings.Contains(v, "[REDACTED:") && k != "GITHUB_TOKEN" {
			t.Errorf("%s = %q was redacted too", k, v)
		}
	}
	g.proc.stop(t)
	noneInFiles(t, g, pat)
	var found bool
	for _, r := range exportRows(t, "-c", g.cfgPath) {
		if r.Kind == "result" && r.Target == "get-env" {
			found = hasFinding(rowFindings(t, r), "github-pat", "result.content[0].text", "redact")
		}
	}
	if !found {
		t.Errorf("no get-env result row with a github-pat finding (redact)")
	}
}

// TestDLPFindingsReachPolicy: with examples/policies and DLP rules that
// flag instead of redacting or blocking, policy decides on the findings:
// a flagged card number in a tool result needs an approval (which, with no
// approval queue yet, refuses it), and a flagged private key in a call's
// arguments is denied to a backend that is not a vault and passes to one
// that is.
func TestDLPFindingsReachPolicy(t *testing.T) {
	t.Parallel()
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	vaultOutbox := filepath.Join(t.TempDir(), "vault-outbox.jsonl")
	demo := demoStdio("demo", t.TempDir(), "shared")
	demo.Args = append(demo.Args, "--outbox", outbox)
	vault := demoStdio("vault", t.TempDir(), "shared")
	vault.Args = append(vault.Args, "--outbox", vaultOutbox)
	vault.Labels = map[string]string{"kind": "vault"}
	cfg := baseConfig(demo, vault)
	cfg.Policy = &policyConfig{Paths: []string{filepath.Join(repoRoot, "examples", "policies")}, Timeout: e2ePolicyTimeout}
	cfg.DLP = &dlpConfig{Rules: []dlpRule{
		{Detectors: []string{"CREDIT_CARD"}, Direction: "backend_to_client", Backends: []string{"demo"}, Action: "flag"},
		{Detectors: []string{"private-key"}, Direction: "client_to_backend", Action: "flag"},
	}}
	g := newGateway(t, cfg)
	alice := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, alice)

	t.Run("a flagged card in a tool result needs an approval", func(t *testing.T) {
		r := s.call(t, 2, "demo__lookup_customer", map[string]any{"customer_id": anaID})
		wantDenied(t, "lookup_customer", r, "approval required (a card number leaves in a tool result)")
		if bytes.Contains(r.Body, []byte(anaCard)) {
			t.Errorf("the refusal holds the card number: %s", r.Body)
		}
		// A result without a card needs no approval.
		mustRawCall(t, s, 3, "demo__list_files", map[string]any{})
	})

	pemKey := privateKeyPEM(t)
	mail := func(subject string) map[string]any {
		return map[string]any{"to": []string{"bob@example.com"}, "subject": subject, "body": "the deploy key:\n" + pemKey}
	}
	t.Run("a flagged private key is denied to a backend that is not a vault", func(t *testing.T) {
		r := s.call(t, 4, "demo__send_email", mail("key to demo"))
		wantDenied(t, "send_email with a key", r, "denied by policy: the arguments hold a private key; private keys may only be sent to a vault")
		if got := outboxSubjects(t, outbox); len(got) != 0 {
			t.Errorf("the demo backend's outbox has %v: the denied call reached it", got)
		}
	})
	t.Run("and passes to a vault", func(t *testing.T) {
		mustRawCall(t, s, 5, "vault__send_email", mail("key to vault"))
		if got := outboxSubjects(t, vaultOutbox); !slices.Equal(got, []string{"key to vault"}) {
			t.Errorf("the vault's outbox has %v; want [key to vault]", got)
		}
	})

	g.proc.stop(t)
	rows := exportRows(t, "-c", g.cfgPath)
	seen := map[string]bool{}
	for _, r := range rows {
		switch {
		case r.Kind == "result" && r.Target == "lookup_customer":
			seen["card"] = true
			if r.Decision != "approval" || !slices.Contains(r.Rules, "examples/card-in-result") || r.Outcome != "refused" {
				t.Errorf("lookup_customer result row %s: decision %q rules %v outcome %q; want approval, examples/card-in-result, refused", r, r.Decision, r.Rules, r.Outcome)
			}
			if fs := rowFindings(t, r); !hasFinding(fs, "CREDIT_CARD", "result.structuredContent.card_number", "flag") {
				t.Errorf("lookup_customer result row findings %s; want CREDIT_CARD at result.structuredContent.card_number, flag", r.Findings)
			}
		case r.Kind == "request" && r.Backend == "demo" && r.Target == "send_email":
			seen["key"] = true
			if r.Decision != "deny" || !slices.Equal(r.Rules, []string{"examples/private-key-in-arguments"}) || r.Outcome != "refused" {
				t.Errorf("send_email request row %s: decision %q rules %v outcome %q; want deny, [examples/private-key-in-arguments], refused", r, r.Decision, r.Rules, r.Outcome)
			}
			if fs := rowFindings(t, r); !hasFinding(fs, "private-key", "params.arguments.body", "flag") {
				t.Errorf("send_email request row findings %s; want private-key at params.arguments.body, flag", r.Findings)
			}
		case r.Kind == "request" && r.Backend == "vault" && r.Target == "send_email":
			seen["vault"] = true
			if r.Decision != "allow" || slices.Contains(r.Rules, "examples/private-key-in-arguments") {
				t.Errorf("vault send_email request row %s: decision %q rules %v; want allow", r, r.Decision, r.Rules)
			}
		}
	}
	for _, k := range []string{"card", "key", "vault"} {
		if !seen[k] {
			t.Errorf("no audit row for the %s case", k)
		}
	}
}

// TestDLPAllowRuleLetsOneValueThrough: an allow rule with values lets that
// exact email through unredacted; another email is still redacted.
func TestDLPAllowRuleLetsOneValueThrough(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
	cfg.DLP = &dlpConfig{Rules: append([]dlpRule{
		{Detectors: []string{"EMAIL_ADDRESS"}, Values: []string{anaEmail}, Action: "allow"},
	}, demoDLPRules(t)...)}
	g := newGateway(t, cfg)
	alice := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, alice)

	text, sc := toolResult(t, mustRawCall(t, s, 2, "demo__lookup_customer", map[string]any{"customer_id": anaID}))
	if sc["email"] != anaEmail || !strings.Contains(text, anaEmail) {
		t.Errorf("the allowlisted email was changed: structuredContent.email = %v, text:\n%s", sc["email"], text)
	}
	if sc["phone"] != "[REDACTED:PHONE_NUMBER]" || sc["card_number"] != "[REDACTED:CREDIT_CARD]" {
		t.Errorf("the allow rule let more through: phone %v, card_number %v", sc["phone"], sc["card_number"])
	}
	text, sc = toolResult(t, mustRawCall(t, s, 3, "demo__lookup_customer", map[string]any{"customer_id": "cus_1002"}))
	if sc["email"] != "[REDACTED:EMAIL_ADDRESS]" || strings.Contains(text, benEmail) {
		t.Errorf("another email went through: structuredContent.email = %v, text:\n%s", sc["email"], text)
	}
	if m := metricsText(t, g); !strings.Contains(m, "sallyport_dlp_findings_allowlisted_total 2") {
		t.Errorf("metrics do not count the 2 allowlisted findings:\n%s", grepLines(m, "sallyport_dlp_"))
	}

	g.proc.stop(t)
	for _, r := range exportRows(t, "-c", g.cfgPath) {
		if r.Kind != "result" || r.Target != "lookup_customer" {
			continue
		}
		for _, f := range rowFindings(t, r) {
			if f.Detector == "EMAIL_ADDRESS" && f.Action != "redact" {
				t.Errorf("row %s: an email finding with action %q; an allowlisted one is no finding at all", r, f.Action)
			}
		}
	}
}

// grepLines returns the lines of s that hold substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// runSallyportStdin is runSallyport with stdin.
func runSallyportStdin(t testing.TB, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, sallyportBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("sallyport %s: timed out", strings.Join(args, " "))
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	case err != nil:
		t.Fatalf("sallyport %s: %v", strings.Join(args, " "), err)
	}
	return 0, out.String(), errOut.String()
}

// dlpScanOutput is `sallyport dlp scan --format json`'s document.
type dlpScanOutput struct {
	Mode     string `json:"mode"`
	Findings []struct {
		Detector string `json:"detector"`
		Category string `json:"category"`
		Path     string `json:"path"`
		Line     int    `json:"line"`
		Column   int    `json:"column"`
		Offset   int    `json:"offset"`
		Length   int    `json:"length"`
		Encoding string `json:"encoding"`
		Action   string `json:"action"`
		Value    string `json:"value"`
	} `json:"findings"`
	Blocked string          `json:"blocked"`
	Message json.RawMessage `json:"message"`
}

func parseScan(t testing.TB, out string) dlpScanOutput {
	t.Helper()
	var o dlpScanOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("dlp scan --format json: %v\n%s", err, out)
	}
	return o
}

// TestDLPScanCLI: `sallyport dlp scan` finds what the gateway would, in a
// text file and in a JSON-RPC message (with the actions the gateway would
// take, under a configuration's rules), masks the values unless asked,
// and exits 3 on findings only with --fail.
func TestDLPScanCLI(t *testing.T) {
	t.Parallel()
	key := awsKey(t)
	encoded := base64.StdEncoding.EncodeToString([]byte("aws_access_key_id = " + key + "\n"))
	dir := t.TempDir()
	file := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(file, []byte("hello\nkey: "+key+" mail "+benEmail+"\nblob: "+encoded+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(dir, "clean.txt")
	if err := os.WriteFile(clean, []byte("nothing to see here, release 1.2.3 on 2024-01-15\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("text: every finding, with line and column, values masked, exit 0", func(t *testing.T) {
		code, out, errOut := runSallyport(t, nil, "dlp", "scan", file)
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		for _, want := range []string{"aws-access-token", "EMAIL_ADDRESS", "2:6", "base64", "3 finding(s)"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		for _, v := range []string{key, benEmail, encoded} {
			if strings.Contains(out, v) {
				t.Errorf("output shows %q unmasked:\n%s", v, out)
			}
		}
		if _, out, _ := runSallyport(t, nil, "dlp", "scan", "--show-values", file); !strings.Contains(out, key) || !strings.Contains(out, benEmail) {
			t.Errorf("--show-values does not show the values:\n%s", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		code, out, errOut := runSallyport(t, nil, "dlp", "scan", "--format", "json", file)
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		o := parseScan(t, out)
		if o.Mode != "text" || len(o.Findings) != 3 {
			t.Fatalf("mode %q, %d findings; want text and 3:\n%s", o.Mode, len(o.Findings), out)
		}
		if f := o.Findings[0]; f.Detector != "aws-access-token" || f.Line != 2 || f.Column != 6 || f.Length != len(key) || strings.Contains(f.Value, key) {
			t.Errorf("first finding %+v; want aws-access-token at 2:6, %d bytes, masked", f, len(key))
		}
		if f := o.Findings[2]; f.Detector != "aws-access-token" || f.Encoding != "base64" || f.Line != 3 {
			t.Errorf("third finding %+v; want the base64-encoded aws-access-token on line 3", f)
		}
	})

	t.Run("--fail exits 3 on findings, 0 without", func(t *testing.T) {
		if code, out, errOut := runSallyport(t, nil, "dlp", "scan", "--fail", file); code != 3 {
			t.Errorf("--fail with findings: exit %d, want 3: %s%s", code, out, errOut)
		}
		code, out, errOut := runSallyport(t, nil, "dlp", "scan", "--fail", clean)
		if code != 0 || !strings.Contains(out, "no findings") {
			t.Errorf("--fail without findings: exit %d, want 0 and \"no findings\": %s%s", code, out, errOut)
		}
	})

	t.Run("a JSON-RPC request on stdin: the refusal the gateway would answer", func(t *testing.T) {
		msg := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"demo__send_email","arguments":{"body":"` + key + `","note":"` + encoded + `"}}}`
		code, out, errOut := runSallyportStdin(t, msg, "dlp", "scan", "--format", "json", "-")
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		o := parseScan(t, out)
		if o.Mode != "message" || !strings.HasPrefix(o.Blocked, "blocked by DLP: ") ||
			!strings.Contains(o.Blocked, "aws-access-token in params.arguments.body") ||
			!strings.Contains(o.Blocked, "aws-access-token in params.arguments.note (base64-encoded)") {
			t.Errorf("mode %q blocked %q; want message mode and the gateway's refusal naming both arguments", o.Mode, o.Blocked)
		}
		for _, f := range o.Findings {
			if f.Action != "block" {
				t.Errorf("finding %+v: action %q, want block", f, f.Action)
			}
		}
		if strings.Contains(out, key) || strings.Contains(out, encoded) {
			t.Errorf("the output holds the key:\n%s", out)
		}
	})

	t.Run("a result under a configuration's rules: the message the gateway would forward", func(t *testing.T) {
		cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
		cfg.DLP = &dlpConfig{Rules: demoDLPRules(t)}
		g := newGateway(t, cfg)
		result := `{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"` + anaName + ` <` + anaEmail + `> card ` + anaCard + `"}]}}`
		resFile := filepath.Join(dir, "result.json")
		if err := os.WriteFile(resFile, []byte(result), 0o600); err != nil {
			t.Fatal(err)
		}
		// The demo rule is for backend demo: named, it redacts.
		code, out, errOut := runSallyport(t, nil, "dlp", "scan", "--format", "json", "-c", g.cfgPath, "--backend", "demo", resFile)
		if code != 0 {
			t.Fatalf("exit %d: %s%s", code, out, errOut)
		}
		o := parseScan(t, out)
		if o.Blocked != "" || !bytes.Contains(o.Message, []byte("[REDACTED:EMAIL_ADDRESS]")) || !bytes.Contains(o.Message, []byte("[REDACTED:CREDIT_CARD]")) ||
			bytes.Contains(o.Message, []byte(anaEmail)) || !bytes.Contains(o.Message, []byte(anaName)) {
			t.Errorf("with the demo rule, the forwarded message is %s (blocked %q); want the email and card redacted, the name kept", o.Message, o.Blocked)
		}
		for _, f := range o.Findings {
			if f.Path != "result.content[0].text" || f.Action != "redact" {
				t.Errorf("finding %+v; want result.content[0].text, redact", f)
			}
		}
		// Another backend: the defaults (email flagged, card masked).
		_, out, _ = runSallyport(t, nil, "dlp", "scan", "--format", "json", "-c", g.cfgPath, "--backend", "other", resFile)
		o = parseScan(t, out)
		if !bytes.Contains(o.Message, []byte(anaEmail)) || !bytes.Contains(o.Message, []byte("************1111")) {
			t.Errorf("with the defaults, the forwarded message is %s; want the email kept and the card masked", o.Message)
		}
	})
}

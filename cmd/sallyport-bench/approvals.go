package main

// The approval queue's measurements:
//
//   - the approval stage on calls that need no approval, in process: the
//     LogStage and the policy stage (the embedded default policy, which
//     allows the echo call without approval) with approvals.Service.Stage()
//     after them and without it, one call of each in turn (the order
//     alternating), so that the machine's drift falls on both alike. The
//     Service is the one sallyport serve builds, over a real database,
//     with Run going;
//   - the live feed through sallyport serve: a policy of the harness's own
//     holds the backend's tool for approval when its arguments carry a
//     bench_id; one reviewer's WebSocket is connected to
//     /api/approvals/ws; a client sends held calls one after another, each
//     timed from sending the tools/call to the "item" event (state
//     pending) for it on the feed, then denied over the API so that the
//     next can start. Before each, a call that needs no approval is timed
//     through the same gateway as the baseline;
//   - pending load, on the same gateway: --approval-pending items in
//     retry mode (each call is cancelled with notifications/cancelled once
//     its item is on the feed, and the item stays pending) with
//     --approval-reviewers feeds connected, the gateway's VmRSS before and
//     after, the snapshot a newly connecting reviewer gets, and the push
//     latency of more items to every reviewer.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sallyport/sallyport/approvals"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/sqlite"
	"github.com/sallyport/sallyport/policy"
)

// Bounds of the approval measurements.
const (
	// maxApprovalPending is the ceiling of
	// approvals.max_pending_per_principal: the pending items and the
	// pushed ones are all the calling principal's.
	maxApprovalPending = 10000
	// maxApprovalReviewers bounds --approval-reviewers (a token each).
	maxApprovalReviewers = 100
	// approvalWarmupMax bounds the held calls before the measured ones.
	approvalWarmupMax = 10
	// approvalWorkers are the clients creating the pending items at once.
	approvalWorkers = 8
	// approvalSnapshots is how many times a new reviewer connects.
	approvalSnapshots = 5
	// approvalTimeout is the gateway's approvals.timeout: longer than
	// the pending load may take (approvalLoadWait), so that no item
	// expires while it is measured, and shorter than the 10m default.
	approvalTimeout = "5m"
	// approvalLoadWait bounds the pending load measurement.
	approvalLoadWait = 3 * time.Minute
	// benchIDKey is the argument that tags a held call; the harness's
	// policy holds the calls that carry it.
	benchIDKey = "bench_id"
	// retryPrefix starts the bench_id of the calls held in retry mode.
	retryPrefix = "retry-"
	// callerPrincipal is the principal of the calls.
	callerPrincipal = "bench"
)

// measureApprovals runs the approval measurements the flags ask for.
func (h *harness) measureApprovals(ctx context.Context) *ApprovalReport {
	rep := &ApprovalReport{}
	if h.opt.approvalStageCalls > 0 {
		rep.Stage = h.measureApprovalStage(ctx)
		if rep.Stage.Error != "" {
			h.logf("approval stage: FAILED: %s", rep.Stage.Error)
		}
	}
	if h.opt.approvalCalls == 0 || context.Cause(ctx) != nil {
		return rep
	}
	h.logf("approvals: starting sallyport serve with a policy that holds %s__%s", h.spec.ID, h.spec.Tool)
	g, err := h.startApprovalGateway(ctx)
	if err != nil {
		rep.Error = err.Error()
		h.logf("approvals: FAILED: %s", rep.Error)
		return rep
	}
	defer g.p.stop()
	rep.Gateway = g.description
	rep.Feed = h.measureApprovalFeed(ctx, g)
	if rep.Feed.Error != "" {
		h.logf("approvals feed: FAILED: %s", rep.Feed.Error)
	}
	switch {
	case h.opt.approvalPending == 0 || context.Cause(ctx) != nil:
	case rep.Feed.Error != "":
		// A held call that failed may have left its item pending, and the
		// gateway is in doubt.
		h.logf("approvals pending: skipped, the feed measurement failed")
	default:
		rep.Pending = h.measureApprovalPending(ctx, g)
		if rep.Pending.Error != "" {
			h.logf("approvals pending: FAILED: %s", rep.Pending.Error)
		}
	}
	return rep
}

// ---------------------------------------------------------------------------
// The stage, in process

// approvalStagePipeline describes the in-process pair, for the report.
const approvalStagePipeline = "LogStage → policy (embedded default policy: allowed, no require_approval) [→ approvals.Service.Stage(), over SQLite, Run going]; delivery does nothing"

// newApprovalService builds the approval queue as sallyport serve does
// (cmd/sallyport newApprovals: the database's approvals store and audit
// log, the auditor's request rows, the configuration's defaults) over a
// new database in dir, and starts its Run. stop ends Run and closes the
// database.
func newApprovalService(ctx context.Context, dir string) (q *approvals.Service, stop func() error, err error) {
	db, err := sqlite.Open(ctx, filepath.Join(dir, "approval-stage.db"), sqlite.Options{Synchronous: sqlite.SyncNormal})
	if err != nil {
		return nil, nil, err
	}
	a := audit.New(audit.Options{Log: db.Audit(), Arguments: audit.ArgumentsFull})
	q = approvals.New(approvals.Options{
		Store: db.Approvals(), Audit: db.Audit(), RequestRow: a.Row,
		Timeout: config.DefaultApprovalTimeout.D(), Mode: config.DefaultApprovalMode, Reviewers: config.DefaultApprovalReviewers,
		MaxPending: config.DefaultApprovalMaxPending, ProgressInterval: config.DefaultApprovalProgress.D(),
		Logger: slog.New(slog.DiscardHandler),
	})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(runCtx)
	}()
	return q, func() error {
		cancel()
		<-done
		return db.Close()
	}, nil
}

// newApprovalStageRigs returns two rigs over one policy stage: without
// ends the chain with it, with adds q's stage after it, where sallyport
// serve has it.
func newApprovalStageRigs(ctx context.Context, q *approvals.Service, timeout time.Duration) (without, with *stageRig, err error) {
	p, err := newBenchPolicy(ctx, policy.Source{}, timeout)
	if err != nil {
		return nil, nil, err
	}
	if without, err = newStageRig(ctx, "", ""); err != nil {
		return nil, nil, err
	}
	// The same principal and sessions: the calls differ in the stage only.
	with = &stageRig{principal: without.principal, sessions: without.sessions}
	logStage := gateway.LogStage{Logger: slog.New(slog.DiscardHandler)}
	without.chain = gateway.Chain(logStage, p)
	with.chain = gateway.Chain(logStage, p, q.Stage())
	return without, with, nil
}

// measureApprovalStage measures the pipeline with and without the approval
// stage, interleaved, on calls that need no approval.
func (h *harness) measureApprovalStage(ctx context.Context) *ApprovalStageResult {
	res := &ApprovalStageResult{Pipeline: approvalStagePipeline}
	q, stop, err := newApprovalService(ctx, h.dbDir)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer stop()
	without, with, err := newApprovalStageRigs(ctx, q, h.opt.policyTimeout)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	h.logf("approval stage: %d calls with it and %d without, interleaved, after %d warm-up calls of each", h.opt.approvalStageCalls, h.opt.approvalStageCalls, h.opt.warmup)
	pr, err := measurePairs(ctx, without.call, with.call, h.opt.warmup, h.opt.approvalStageCalls, h.opt.callTimeout)
	res.Pairs = pr.pairs
	res.Without, res.With = &pr.without, &pr.with
	res.PairedMedianNS, res.PairedMeanNS = pr.medianNS, pr.meanNS
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// pairResult is what measurePairs measured.
type pairResult struct {
	pairs         int
	without, with Summary
	// The median and mean of with − without within each pair, in ns.
	medianNS, meanNS float64
}

// measurePairs makes n calls of a and n of b, one of each in turn (a then
// b, then b then a, and so on), after warm calls of each. A pair in which
// either call ran past the policy stage's deadline is left out and
// counted as a timeout in both summaries; any other error ends the
// measurement and is returned. A summary's calls/s is over the time its
// own calls took.
func measurePairs(ctx context.Context, a, b caller, warm, n int, timeout time.Duration) (pairResult, error) {
	var res pairResult
	for range warm {
		for _, c := range []caller{a, b} {
			if _, err := timed(ctx, c, timeout); err != nil && !errors.Is(err, errPolicyDeadline) {
				return res, fmt.Errorf("warm-up call: %w", err)
			}
		}
	}
	la := make([]time.Duration, 0, n)
	lb := make([]time.Duration, 0, n)
	diffs := make([]time.Duration, 0, n)
	var wallA, wallB time.Duration
	timeouts := 0
	var firstTO string
	finish := func(err error) (pairResult, error) {
		res.pairs = len(diffs)
		res.without, res.with = summarize(la, 0, wallA), summarize(lb, 0, wallB)
		res.without.Timeouts, res.with.Timeouts = timeouts, timeouts
		res.without.FirstTimeout, res.with.FirstTimeout = firstTO, firstTO
		if len(diffs) > 0 {
			slices.Sort(diffs)
			var sum time.Duration
			for _, d := range diffs {
				sum += d
			}
			res.medianNS = float64(diffs[len(diffs)/2])
			res.meanNS = round(float64(sum)/float64(len(diffs)), 1)
		}
		if err != nil {
			res.without.Aborted, res.with.Aborted = true, true
		}
		return res, err
	}
	for i := range n {
		if err := context.Cause(ctx); err != nil {
			return finish(err)
		}
		var da, db time.Duration
		var errA, errB error
		if i%2 == 0 {
			da, errA = timed(ctx, a, timeout)
			db, errB = timed(ctx, b, timeout)
		} else {
			db, errB = timed(ctx, b, timeout)
			da, errA = timed(ctx, a, timeout)
		}
		if errA != nil || errB != nil {
			err := errors.Join(errA, errB)
			if (errA == nil || errors.Is(errA, errPolicyDeadline)) && (errB == nil || errors.Is(errB, errPolicyDeadline)) {
				if timeouts++; firstTO == "" {
					firstTO = err.Error()
				}
				if timeouts >= errLimit && timeouts > len(diffs) {
					return finish(fmt.Errorf("%d pairs ran past the policy stage's deadline: %w", timeouts, err))
				}
				continue
			}
			if errA != nil {
				return finish(fmt.Errorf("without the approval stage: %w", errA))
			}
			return finish(fmt.Errorf("with the approval stage: %w", errB))
		}
		la, lb, diffs = append(la, da), append(lb, db), append(diffs, db-da)
		wallA += da
		wallB += db
	}
	return finish(nil)
}

// ---------------------------------------------------------------------------
// The gateway

// approvalGateway is sallyport serve running the harness's approval
// policy, and the tokens of its principals.
type approvalGateway struct {
	p           *proc
	mcpURL      string // the MCP endpoint
	base        string // http://127.0.0.1:port
	tool        string // the held tool, as clients call it
	caller      string // the calling principal's bearer token
	reviewers   []string
	newcomer    string // the token of the reviewer who connects to take snapshots
	api         *http.Client
	description string
}

// approvalPolicy is the harness's policy: a tools/call of tool on backend
// whose arguments carry bench_id needs a reviewer's approval, in retry
// mode when the id starts with retryPrefix and in hold mode otherwise;
// everything else is allowed.
func approvalPolicy(backend, tool string) string {
	return fmt.Sprintf(`# Written by sallyport-bench.
package sallyport

bench_id := object.get(object.get(input, "arguments", {}), %[1]q, "")

approval_request := {"reason": "sallyport-bench: a reviewer must see this call", "mode": "retry"} if {
	startswith(bench_id, %[2]q)
} else := {"reason": "sallyport-bench: a reviewer must see this call"}

decision := {"allow": true, "rules": ["bench/needs-approval"], "require_approval": approval_request} if {
	input.kind == "request"
	input.method == "tools/call"
	input.backend.id == %[3]q
	input.tool.backend_name == %[4]q
	bench_id != ""
} else := {"allow": true, "rules": ["bench/allow"]}
`, benchIDKey, retryPrefix, backend, tool)
}

// approvalGatewayConfig is the configuration of the approval gateway:
// warn-level logging, bearer tokens only, the audit log at its default
// synchronous=normal, the harness's policy, approvals.timeout
// approvalTimeout, and the backend with isolation shared (the backend is
// reached only by the calls that need no approval).
func approvalGatewayConfig(port int, spec backendSpec, db, policyDir string, maxPending int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by sallyport-bench.\n")
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\n", port)
	fmt.Fprintf(&b, "log: {level: warn}\n")
	fmt.Fprintf(&b, "database: %s\n", yamlString(db))
	fmt.Fprintf(&b, "policy: {paths: [%s]}\n", yamlString(policyDir))
	fmt.Fprintf(&b, "approvals: {timeout: %s, max_pending_per_principal: %d}\n", approvalTimeout, maxPending)
	fmt.Fprintf(&b, "backends:\n")
	fmt.Fprintf(&b, "  - id: %s\n", spec.ID)
	fmt.Fprintf(&b, "    transport: stdio\n")
	fmt.Fprintf(&b, "    command: %s\n", yamlString(spec.Command))
	args := make([]string, len(spec.Args))
	for i, a := range spec.Args {
		args[i] = yamlString(a)
	}
	fmt.Fprintf(&b, "    args: [%s]\n", strings.Join(args, ", "))
	fmt.Fprintf(&b, "    isolation: %s\n", isolationShared)
	return []byte(b.String())
}

// startApprovalGateway writes the policy and the configuration, creates
// the tokens (the caller, the reviewers, the newcomer) and starts
// sallyport serve.
func (h *harness) startApprovalGateway(ctx context.Context) (*approvalGateway, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(h.tmp, "approvals-")
	if err != nil {
		return nil, err
	}
	policyDir := filepath.Join(dir, "policy")
	if err := os.MkdirAll(policyDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(policyDir, "bench.rego"), []byte(approvalPolicy(h.spec.ID, h.spec.Tool)), 0o644); err != nil {
		return nil, fmt.Errorf("write the approval policy: %w", err)
	}
	cfgPath := filepath.Join(dir, "sallyport.yaml")
	db := filepath.Join(h.dbDir, "approvals-audit.db")
	if err := os.WriteFile(cfgPath, approvalGatewayConfig(port, h.spec, db, policyDir, maxApprovalPending), 0o600); err != nil {
		return nil, fmt.Errorf("write sallyport config: %w", err)
	}
	g := &approvalGateway{tool: h.spec.ID + "__" + h.spec.Tool}
	if g.caller, err = h.createToken(ctx, cfgPath, callerPrincipal, "dev"); err != nil {
		return nil, err
	}
	for i := range max(h.opt.approvalReviewers, 1) {
		tok, err := h.createToken(ctx, cfgPath, fmt.Sprintf("rev%02d", i+1), config.DefaultApprovalReviewers)
		if err != nil {
			return nil, err
		}
		g.reviewers = append(g.reviewers, tok)
	}
	if g.newcomer, err = h.createToken(ctx, cfgPath, "rev-new", config.DefaultApprovalReviewers); err != nil {
		return nil, err
	}
	if g.p, g.mcpURL, err = h.startSallyport(ctx, "sallyport serve (approvals)", cfgPath, dir); err != nil {
		return nil, err
	}
	g.base = strings.TrimSuffix(g.mcpURL, "/mcp")
	g.api = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4 * approvalWorkers,
	}}
	g.description = fmt.Sprintf("sallyport serve (%s, audit synchronous=normal, approvals.timeout %s, backend isolation shared), tokens for %s (dev) and %d reviewers (group %s)",
		g.mcpURL, approvalTimeout, callerPrincipal, len(g.reviewers)+1, config.DefaultApprovalReviewers)
	return g, nil
}

// createToken runs `sallyport tokens create` and returns the token.
func (h *harness) createToken(ctx context.Context, cfgPath, principal, groups string) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	cmd := exec.CommandContext(tctx, h.opt.sallyport, "tokens", "create", "-c", cfgPath, "--principal", principal, "--groups", groups)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("sallyport tokens create --principal %s: %v: %s", principal, err, firstLine(stderr.String()))
	}
	tok := strings.TrimSpace(string(out))
	if tok == "" || strings.ContainsAny(tok, " \n") {
		return "", fmt.Errorf("sallyport tokens create --principal %s printed %q, not one token", principal, tok)
	}
	return tok, nil
}

// open opens an MCP session as the caller.
func (g *approvalGateway) open(ctx context.Context, h *harness) (*session, error) {
	octx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	return h.openHTTP(octx, g.mcpURL, g.tool, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + g.caller}))
}

// deny denies item id over the API as the reviewer with token.
func (g *approvalGateway) deny(ctx context.Context, id, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.base+"/api/approvals/"+url.PathEscape(id)+"/deny",
		strings.NewReader(`{"comment":"sallyport-bench"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.api.Do(req)
	if err != nil {
		return fmt.Errorf("deny %s: %w", id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("deny %s: HTTP %d: %s", id, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// heldCall sends the tools/call tagged id and returns its error; a call
// that returns a result instead is an error too (the harness's policy
// holds every tagged call, and none is approved).
func heldCall(ctx context.Context, s *session, id string) error {
	args := maps.Clone(s.args)
	args[benchIDKey] = id
	var req mcp.CallToolRequest
	req.Params.Name = s.tool
	req.Params.Arguments = args
	res, err := s.c.CallTool(ctx, req)
	if err != nil {
		return err
	}
	return fmt.Errorf("the held call %s returned a result (isError %v): it was delivered without an approval", id, res.IsError)
}

// rawSession is a Streamable HTTP MCP session spoken by hand, as the
// caller, taking JSON answers only. It lets the harness give up a held call
// the way MCP cancels a request, with notifications/cancelled: over HTTP
// mcp-go's client sends none before protocol version 2026-07-28, and a
// request whose connection merely closes is not cancelled (the spec says a
// disconnection is not a cancellation), so its request would go on waiting
// in the gateway until the item is decided or expires.
type rawSession struct {
	url, token, id string
	tool           string
	args           map[string]any
	hc             *http.Client
	next           atomic.Int64
}

// openRaw opens a session that calls g's held tool with args:
// initialize, then notifications/initialized.
func (g *approvalGateway) openRaw(ctx context.Context, args map[string]any) (*rawSession, error) {
	s := &rawSession{url: g.mcpURL, token: g.caller, tool: g.tool, args: args, hc: g.api}
	octx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	init := map[string]any{"jsonrpc": "2.0", "id": s.next.Add(1), "method": "initialize", "params": map[string]any{
		"protocolVersion": mcp.LATEST_LEGACY_PROTOCOL_VERSION, "capabilities": map[string]any{},
		"clientInfo": map[string]any{"name": "sallyport-bench", "version": "1.0.0"},
	}}
	resp, answer, err := s.post(octx, init)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	if answer.Error != nil {
		return nil, fmt.Errorf("initialize: %s", answer.Error.Message)
	}
	if s.id = resp.Header.Get("Mcp-Session-Id"); s.id == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id in the answer")
	}
	if _, _, err := s.post(octx, map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"}); err != nil {
		s.close()
		return nil, fmt.Errorf("notifications/initialized: %w", err)
	}
	return s, nil
}

// rawAnswer is a JSON-RPC answer.
type rawAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// post sends msg and reads the answer: a request's JSON answer (nil for a
// notification, which is accepted with 202).
func (s *rawSession) post(ctx context.Context, msg any) (*http.Response, *rawAnswer, error) {
	body, err := json.Marshal(msg)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(string(body)))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
		req.Header.Set("Mcp-Protocol-Version", mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp, nil, err
	}
	if resp.StatusCode == http.StatusAccepted {
		return resp, nil, nil
	}
	var a rawAnswer
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &a) != nil || a.Result == nil && a.Error == nil {
		return resp, nil, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, data)
	}
	return resp, &a, nil
}

// heldCall sends the tools/call tagged tag with request id id and returns
// the error it was answered with; a result is an error too (the harness's
// policy holds every tagged call, and none is approved).
func (s *rawSession) heldCall(ctx context.Context, id int64, tag string) error {
	args := maps.Clone(s.args)
	args[benchIDKey] = tag
	_, a, err := s.post(ctx, map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": s.tool, "arguments": args}})
	if err != nil {
		return err
	}
	if a.Error != nil {
		return fmt.Errorf("error %d: %s", a.Error.Code, a.Error.Message)
	}
	return fmt.Errorf("the held call %s returned a result: it was delivered without an approval", tag)
}

// cancel sends notifications/cancelled for request id.
func (s *rawSession) cancel(ctx context.Context, id int64) error {
	_, _, err := s.post(ctx, map[string]any{"jsonrpc": "2.0", "method": "notifications/cancelled",
		"params": map[string]any{"requestId": id, "reason": "sallyport-bench: the item is on the feeds"}})
	return err
}

// close ends the session with DELETE.
func (s *rawSession) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.url, nil)
	if err != nil {
		return
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Mcp-Session-Id", s.id)
	if resp, err := s.hc.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// ---------------------------------------------------------------------------
// The reviewers' live feeds

// feedEvent is what the harness reads of a feed message.
type feedEvent struct {
	Type string `json:"type"`
	Item *struct {
		ID        string `json:"id"`
		State     string `json:"state"`
		Arguments string `json:"arguments"`
	} `json:"item"`
	Items []json.RawMessage `json:"items"`
}

// benchIDOf returns the bench_id in an item's canonical arguments.
func benchIDOf(arguments string) string {
	var args map[string]any
	if json.Unmarshal([]byte(arguments), &args) != nil {
		return ""
	}
	id, _ := args[benchIDKey].(string)
	return id
}

// arrival is one tagged call's item as the reviewers' feeds received it.
type arrival struct {
	w     *feedWatch
	need  int
	id    string      // the item's id
	at    []time.Time // per reviewer; zero until it arrived there
	n     int
	first chan struct{} // closed when the first reviewer has it
	all   chan struct{} // closed when need reviewers have it
}

// feedWatch matches the items arriving on the feeds with the calls that
// wait for them, by bench_id.
type feedWatch struct {
	mu   sync.Mutex
	tags map[string]*arrival
}

func newFeedWatch() *feedWatch { return &feedWatch{tags: map[string]*arrival{}} }

// expect registers the call tagged tag, seen by reviewers feeds, of which
// need must have its item.
func (w *feedWatch) expect(tag string, reviewers, need int) *arrival {
	a := &arrival{w: w, need: need, at: make([]time.Time, reviewers), first: make(chan struct{}), all: make(chan struct{})}
	w.mu.Lock()
	w.tags[tag] = a
	w.mu.Unlock()
	return a
}

func (w *feedWatch) forget(tag string) {
	w.mu.Lock()
	delete(w.tags, tag)
	w.mu.Unlock()
}

// arrived records that reviewer r received item id, tagged tag, at at.
// An item pushed twice (the poll of another process's changes can publish
// a new item before its creator does) counts once, at its first arrival.
func (w *feedWatch) arrived(tag string, r int, id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := w.tags[tag]
	if a == nil || r >= len(a.at) || !a.at[r].IsZero() {
		return
	}
	a.at[r] = at
	if a.id == "" {
		a.id = id
	}
	if a.n++; a.n == 1 {
		close(a.first)
	}
	if a.n == a.need {
		close(a.all)
	}
}

// count returns how many reviewers have a's item.
func (a *arrival) count() int {
	a.w.mu.Lock()
	defer a.w.mu.Unlock()
	return a.n
}

// read returns a's item id and arrival times.
func (w *feedWatch) read(a *arrival) (string, []time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return a.id, slices.Clone(a.at)
}

// feedClient is one reviewer's live feed.
type feedClient struct {
	r       int
	conn    *websocket.Conn
	watch   *feedWatch
	done    chan struct{}
	closing atomic.Bool
	items   atomic.Int64 // "item" events in state pending
	mu      sync.Mutex
	err     error // why the feed ended, when the harness did not close it
}

// wsURL is the live feed's URL.
func (g *approvalGateway) wsURL() string {
	return "ws" + strings.TrimPrefix(g.base, "http") + "/api/approvals/ws"
}

// dialFeed connects to the live feed with token and reads its first
// message, the snapshot. It returns the connection, the snapshot's bytes
// and how long the two took together.
func (g *approvalGateway) dialFeed(ctx context.Context, token string, timeout time.Duration) (*websocket.Conn, []byte, time.Duration, error) {
	d := websocket.Dialer{HandshakeTimeout: timeout, ReadBufferSize: 64 << 10} // no Proxy: loopback only
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	conn, resp, err := d.DialContext(dctx, g.wsURL(), http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		if resp != nil {
			return nil, nil, 0, fmt.Errorf("live feed: %w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, nil, 0, fmt.Errorf("live feed: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	_, data, err := conn.ReadMessage()
	took := time.Since(t0)
	if err != nil {
		conn.Close()
		return nil, nil, 0, fmt.Errorf("live feed: reading the snapshot: %w", err)
	}
	conn.SetReadDeadline(time.Time{})
	var ev feedEvent
	if err := json.Unmarshal(data, &ev); err != nil || ev.Type != "snapshot" {
		conn.Close()
		return nil, nil, 0, fmt.Errorf("live feed: the first message is not a snapshot: %.200s", data)
	}
	return conn, data, took, nil
}

// connect connects reviewer r's feed and starts reading it into watch.
func (g *approvalGateway) connect(ctx context.Context, r int, watch *feedWatch, timeout time.Duration) (*feedClient, error) {
	conn, _, _, err := g.dialFeed(ctx, g.reviewers[r], timeout)
	if err != nil {
		return nil, fmt.Errorf("reviewer %d: %w", r+1, err)
	}
	f := &feedClient{r: r, conn: conn, watch: watch, done: make(chan struct{})}
	go f.read()
	return f, nil
}

func (f *feedClient) read() {
	defer close(f.done)
	for {
		_, data, err := f.conn.ReadMessage()
		at := time.Now()
		if err != nil {
			if !f.closing.Load() {
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
			}
			return
		}
		var ev feedEvent
		if json.Unmarshal(data, &ev) != nil || ev.Type != "item" || ev.Item == nil || ev.Item.State != string(gateway.ApprovalPending) {
			continue
		}
		f.items.Add(1)
		if tag := benchIDOf(ev.Item.Arguments); tag != "" {
			f.watch.arrived(tag, f.r, ev.Item.ID, at)
		}
	}
}

// failed returns why the feed ended before the harness closed it, or nil.
func (f *feedClient) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return fmt.Errorf("reviewer %d's live feed ended: %w", f.r+1, f.err)
	}
	return nil
}

// close closes the feed and waits for its reader.
func (f *feedClient) close() {
	f.closing.Store(true)
	f.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	f.conn.Close()
	<-f.done
}

func closeFeeds(fs []*feedClient) {
	for _, f := range fs {
		f.close()
	}
}

// feedsFailed returns the first feed that ended early.
func feedsFailed(fs []*feedClient) error {
	for _, f := range fs {
		if err := f.failed(); err != nil {
			return err
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Send to item: one reviewer, held calls one at a time

// measureApprovalFeed times held calls from sending to their item on one
// reviewer's feed, each denied once its item arrived, with a call that
// needs no approval before each as the baseline.
func (h *harness) measureApprovalFeed(ctx context.Context, g *approvalGateway) *ApprovalFeedResult {
	res := &ApprovalFeedResult{}
	timeout := h.opt.callTimeout
	s, err := g.open(ctx, h)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer s.stop()
	watch := newFeedWatch()
	feed, err := g.connect(ctx, 0, watch, timeout)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer feed.close()
	warm := min(h.opt.warmup, approvalWarmupMax)
	n := h.opt.approvalCalls
	h.logf("approvals feed: %d held calls, each denied once its item is on the feed, after %d warm-up calls; a call that needs no approval before each", n, warm)
	var items, plain []time.Duration
	t0 := time.Now()
	var plainWall, itemWall time.Duration
	for i := range warm + n {
		if err := context.Cause(ctx); err != nil {
			res.Error = err.Error()
			break
		}
		dp, err := timed(ctx, s.call, timeout)
		if err != nil {
			res.Error = fmt.Sprintf("a call that needs no approval: %v", err)
			break
		}
		d, err := g.sendHeld(ctx, s, watch, feed, fmt.Sprintf("hold-%05d", i), timeout)
		if err != nil {
			res.Error = err.Error()
			break
		}
		if i >= warm {
			plain, items = append(plain, dp), append(items, d)
			plainWall += dp
			itemWall += d
		}
	}
	res.Seconds = round(time.Since(t0).Seconds(), 3)
	item, base := summarize(items, 0, itemWall), summarize(plain, 0, plainWall)
	res.Item, res.Plain = &item, &base
	if res.Error != "" {
		res.Item.Aborted = true
	}
	return res
}

// sendHeld sends the held call tagged tag, returns the time from sending
// it to its item's arrival on feed, denies the item as feed's reviewer and
// checks the call ends denied.
func (g *approvalGateway) sendHeld(ctx context.Context, s *session, watch *feedWatch, feed *feedClient, tag string, timeout time.Duration) (time.Duration, error) {
	a := watch.expect(tag, len(g.reviewers), 1)
	defer watch.forget(tag)
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- heldCall(cctx, s, tag) }()
	select {
	case <-a.first:
	case err := <-done:
		return 0, fmt.Errorf("held call %s ended before its item reached the feed: %v", tag, err)
	case <-cctx.Done():
		if err := feed.failed(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("held call %s: no item on the feed within %v", tag, timeout)
	}
	id, at := watch.read(a)
	d := at[feed.r].Sub(t0)
	if err := g.deny(cctx, id, g.reviewers[feed.r]); err != nil {
		return 0, err
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "denied") {
			return 0, fmt.Errorf("held call %s after its denial: %v; want the denial's error", tag, err)
		}
	case <-cctx.Done():
		return 0, fmt.Errorf("held call %s did not end within %v of being sent, though denied", tag, timeout)
	}
	return d, nil
}

// ---------------------------------------------------------------------------
// Pending load: many items, many reviewers

// measureApprovalPending creates the pending items with the reviewers'
// feeds connected, reads the gateway's memory, times a new reviewer's
// snapshot and the push of more items to every reviewer.
func (h *harness) measureApprovalPending(ctx context.Context, g *approvalGateway) *ApprovalPendingResult {
	ctx, cancel := context.WithTimeout(ctx, approvalLoadWait)
	defer cancel()
	n, nr, timeout := h.opt.approvalPending, len(g.reviewers), h.opt.callTimeout
	res := &ApprovalPendingResult{Items: n, Reviewers: nr, Workers: min(approvalWorkers, n), PushItems: h.opt.approvalPushItems}
	pid := g.p.pid()
	fail := func(format string, args ...any) *ApprovalPendingResult {
		res.Error = fmt.Sprintf(format, args...)
		if ctx.Err() != nil {
			res.Error += fmt.Sprintf(" (the measurement is bounded to %v)", approvalLoadWait)
		}
		return res
	}
	res.RSSIdleKB, _ = statusKB(pid, "VmRSS")

	h.logf("approvals pending: %d reviewers connect, %d clients open sessions", nr, res.Workers)
	watch := newFeedWatch()
	var feeds []*feedClient
	defer func() { closeFeeds(feeds) }()
	for r := range nr {
		f, err := g.connect(ctx, r, watch, timeout)
		if err != nil {
			return fail("%v", err)
		}
		feeds = append(feeds, f)
	}
	sessions := make([]*rawSession, res.Workers)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.close()
			}
		}
	}()
	for i := range sessions {
		s, err := g.openRaw(ctx, h.spec.Arguments)
		if err != nil {
			return fail("%v", err)
		}
		sessions[i] = s
	}
	res.RSSBeforeKB, _ = statusKB(pid, "VmRSS")

	h.logf("approvals pending: %d items in retry mode from %d clients", n, res.Workers)
	var (
		next     atomic.Int64
		firstErr error
		errOnce  sync.Once
		failed   atomic.Bool
		arrivals = make([]*arrival, n)
		sent     = make([]time.Time, n)
		wg       sync.WaitGroup
	)
	t0 := time.Now()
	for _, s := range sessions {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() {
					return
				}
				tag := fmt.Sprintf("%s%05d", retryPrefix, i)
				arrivals[i] = watch.expect(tag, nr, nr)
				var err error
				sent[i], err = parkCall(ctx, s, arrivals[i], tag, timeout)
				if err == nil {
					err = feedsFailed(feeds)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fail("%v", firstErr)
	}
	// Every reviewer has every item before the memory is read.
	var created []time.Duration
	for i, a := range arrivals {
		select {
		case <-a.all:
		case <-ctx.Done():
			_, at := watch.read(a)
			return fail("item %d of %d reached %d of %d reviewers: %v", i+1, n, countArrived(at), nr, feedsFailed(feeds))
		}
		_, at := watch.read(a)
		first, _ := span(at)
		created = append(created, first.Sub(sent[i]))
	}
	wall := time.Since(t0)
	res.CreateSeconds = round(wall.Seconds(), 3)
	res.ItemsPerSec = round(float64(n)/wall.Seconds(), 1)
	cs := summarize(created, 0, wall)
	res.Create = &cs
	res.RSSAfterKB, _ = statusKB(pid, "VmRSS")
	res.HWMAfterKB, _ = statusKB(pid, "VmHWM")

	h.logf("approvals pending: a new reviewer connects %d times", approvalSnapshots)
	snap := &SnapshotResult{Connects: approvalSnapshots}
	var took []time.Duration
	for range approvalSnapshots {
		conn, data, d, err := g.dialFeed(ctx, g.newcomer, timeout)
		if err != nil {
			return fail("the new reviewer: %v", err)
		}
		conn.Close()
		var ev feedEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return fail("the new reviewer's snapshot: %v", err)
		}
		snap.Items, snap.Bytes = len(ev.Items), len(data)
		took = append(took, d)
	}
	slices.Sort(took)
	snap.P50MS = millis(percentile(took, 50))
	snap.MaxMS = millis(took[len(took)-1])
	res.Snapshot = snap
	if want := min(n, snapshotLimit); snap.Items != want {
		return fail("the new reviewer's snapshot holds %d items; want %d (the %d pending, at most %d)", snap.Items, want, n, snapshotLimit)
	}

	h.logf("approvals pending: %d more items pushed to %d reviewers, one at a time", res.PushItems, nr)
	var push, last []time.Duration
	pushWall := time.Duration(0)
	for j := range res.PushItems {
		tag := fmt.Sprintf("%spush-%05d", retryPrefix, j)
		a := watch.expect(tag, nr, nr)
		t0, err := parkCallAll(ctx, sessions[0], a, tag, timeout)
		if err == nil {
			err = feedsFailed(feeds)
		}
		if err != nil {
			return fail("push %d: %v", j+1, err)
		}
		_, at := watch.read(a)
		for _, t := range at {
			push = append(push, t.Sub(t0))
		}
		_, latest := span(at)
		l := latest.Sub(t0)
		last = append(last, l)
		pushWall += l
	}
	ps, ls := summarize(push, 0, pushWall), summarize(last, 0, pushWall)
	res.Push, res.PushLast = &ps, &ls
	res.RSSEndKB, _ = statusKB(pid, "VmRSS")
	return res
}

// snapshotLimit is how many pending items a feed's snapshot holds at most
// (approvals/http.go lists them with Limit 1000).
const snapshotLimit = 1000

// parkCall sends the retry-mode call tagged tag, waits until its item is on
// the first reviewer's feed, then cancels the call with
// notifications/cancelled (the item stays pending). It returns when the
// call was sent.
func parkCall(ctx context.Context, s *rawSession, a *arrival, tag string, timeout time.Duration) (time.Time, error) {
	return park(ctx, s, a, a.first, tag, timeout)
}

// parkCallAll is parkCall waiting for every reviewer's feed.
func parkCallAll(ctx context.Context, s *rawSession, a *arrival, tag string, timeout time.Duration) (time.Time, error) {
	return park(ctx, s, a, a.all, tag, timeout)
}

func park(ctx context.Context, s *rawSession, a *arrival, until <-chan struct{}, tag string, timeout time.Duration) (time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := s.next.Add(1)
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- s.heldCall(cctx, id, tag) }()
	select {
	case <-until:
	case err := <-done:
		return t0, fmt.Errorf("held call %s ended before its item reached the feeds: %v", tag, err)
	case <-cctx.Done():
		return t0, fmt.Errorf("held call %s: its item was not on the feeds within %v (%d of %d reviewers had it)", tag, timeout, a.count(), len(a.at))
	}
	if err := s.cancel(cctx, id); err != nil {
		return t0, fmt.Errorf("held call %s: notifications/cancelled: %w", tag, err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "cancelled") {
			return t0, fmt.Errorf("held call %s after notifications/cancelled: %v; want the cancellation's error", tag, err)
		}
	case <-cctx.Done():
		return t0, fmt.Errorf("held call %s did not end within %v of being sent, though cancelled", tag, timeout)
	}
	return t0, nil
}

// countArrived counts the reviewers an item reached.
func countArrived(at []time.Time) int {
	n := 0
	for _, t := range at {
		if !t.IsZero() {
			n++
		}
	}
	return n
}

// span returns the earliest and the latest of the times that are set.
func span(ts []time.Time) (first, last time.Time) {
	for _, t := range ts {
		if t.IsZero() {
			continue
		}
		if first.IsZero() || t.Before(first) {
			first = t
		}
		if t.After(last) {
			last = t
		}
	}
	return first, last
}

// millis converts d to milliseconds, rounded to 0.01 ms.
func millis(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 2) }

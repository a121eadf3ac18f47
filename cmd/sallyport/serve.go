package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sallyport/sallyport/approvals"
	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/auth"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/frontend"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/sqlite"
	"github.com/sallyport/sallyport/policy"
)

// loadConfig loads the file, or without one the built-in demo config.
func loadConfig(path string) (*config.Config, error) {
	if path != "" {
		return config.Load(path)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("locate own executable: %w", err)
	}
	sandbox, err := filepath.Abs(filepath.Join("examples", "demo-sandbox"))
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(sandbox); err != nil || !fi.IsDir() {
		if sandbox, err = os.MkdirTemp("", "sallyport-demo-sandbox-"); err != nil {
			return nil, fmt.Errorf("create demo sandbox: %w", err)
		}
		os.WriteFile(filepath.Join(sandbox, "README.md"), []byte("# Demo sandbox\n\nFiles the demo backend's read_file tool may read.\n"), 0o644)
	}
	return config.Demo(exe, sandbox), nil
}

// stages is the pipeline, in order: DLP, then policy (which sees DLP's
// findings), then the approval queue, between the auditor's outer stage
// and its gate; credential injection goes after the gate. d is nil when
// DLP is disabled.
func stages(log *slog.Logger, a *audit.Auditor, d *dlp.Stage, p *policy.Stage, q *approvals.Service) []gateway.Stage {
	st := []gateway.Stage{a.Outer(), gateway.LogStage{Logger: log}}
	if d != nil {
		st = append(st, d)
	}
	return append(st, p, q.Stage(), a.Gate())
}

// newApprovals returns the approval queue over db; Run must be started.
func newApprovals(cfg *config.Config, db *sqlite.DB, a *audit.Auditor, pol *policy.Stage, log *slog.Logger) *approvals.Service {
	c := cfg.Approvals
	q := approvals.New(approvals.Options{
		Store:             db.Approvals(),
		Audit:             db.Audit(),
		RequestRow:        a.Row,
		Timeout:           c.Timeout.D(),
		Mode:              c.Mode,
		Reviewers:         c.Reviewers,
		MaxPending:        c.MaxPendingPerPrincipal,
		AllowSelfApproval: c.AllowSelfApproval,
		ProgressInterval:  c.ProgressInterval.D(),
		DeliveryLease:     deliveryLease(cfg),
		PolicyVersion:     func() string { return pol.Current().Version() },
		Logger:            log,
	})
	if len(c.Webhooks) > 0 {
		approvals.StartWebhooks(q, c.Webhooks, publicURL(cfg), log)
	}
	return q
}

// deliveryLease is how long an approved call's delivery may take before
// another process may call it ambiguous: the longest backend start plus
// request, and a minute.
func deliveryLease(cfg *config.Config) time.Duration {
	lease := 2 * time.Minute
	for _, b := range cfg.Backends {
		lease = max(lease, b.Timeouts.Startup.D()+b.Timeouts.Request.D()+time.Minute)
	}
	return lease
}

// publicURL is where reviewers reach the gateway.
func publicURL(cfg *config.Config) string {
	if cfg.Approvals.PublicURL != "" {
		return strings.TrimSuffix(cfg.Approvals.PublicURL, "/")
	}
	return "http://" + cfg.Listen
}

// newDLP builds the DLP stage; nil (and a warning) when it is disabled.
func newDLP(cfg *config.Config, log *slog.Logger) (*dlp.Stage, error) {
	if cfg.DLP.Disabled {
		log.Warn("DLP is disabled (dlp.disabled): messages are not scanned for PII and secrets")
		return nil, nil
	}
	d, err := dlp.NewStage(cfg.DLP, log)
	if err != nil {
		return nil, err
	}
	st, _ := d.Status()
	log.Info("DLP enabled", slog.Int("detectors", st.(dlp.Status).Detectors), slog.Int("rules", len(cfg.DLP.Rules)))
	return d, nil
}

// reporters lists the components that report to /readyz and /metrics.
func reporters(d *dlp.Stage, p *policy.Stage, q *approvals.Service) []gateway.Reporter {
	if d == nil {
		return []gateway.Reporter{p, q}
	}
	return []gateway.Reporter{d, p, q}
}

// apiHandler serves /api/: the audit export and the approval queue.
func apiHandler(cfg *config.Config, db *sqlite.DB, q *approvals.Service, log *slog.Logger) http.Handler {
	r := chi.NewRouter()
	r.Handle("/api/audit", audit.Handler{Log: db.Audit(), Logger: log})
	ap := q.Handler(approvals.HandlerOptions{AllowedOrigins: cfg.HTTP.AllowedOrigins})
	r.Handle("/api/approvals", ap)
	r.Handle("/api/approvals/*", ap)
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"not found"}`+"\n")
	})
	return r
}

// newPolicy loads the configured policy (or the embedded default). onSwap
// is called after a reload replaced it.
func newPolicy(ctx context.Context, cfg *config.Config, log *slog.Logger, onSwap func()) (*policy.Stage, error) {
	p, err := policy.NewStage(ctx, policy.Options{
		Source:   policy.Source{Paths: cfg.Policy.Paths, Query: cfg.Policy.Query},
		Timeout:  cfg.Policy.Timeout.D(),
		Backends: cfg.Backends,
		Logger:   log,
		OnSwap:   func(string) { onSwap() },
	})
	if err != nil {
		return nil, err
	}
	set := p.Current()
	log.Info("policy loaded", slog.String("source", set.Source()), slog.String("version", set.Version()))
	return p, nil
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second one
// exits at once.
func signalContext(ctx context.Context, log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		select {
		case sig := <-ch:
			log.Info("shutting down", slog.String("signal", sig.String()))
			cancel()
		case <-ctx.Done():
			signal.Stop(ch)
			return
		}
		<-ch
		log.Warn("second signal: exiting now")
		os.Exit(1)
	}()
	return ctx, cancel
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlags("serve")
	cfgPath := fs.String("c", "", "config file (default: the built-in demo)")
	listen := fs.String("listen", "", "listen address, overriding the config's")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	log, closer, err := newLogger(cfg.Log.Level, cfg.Log.Format, cfg.Log.File, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	db, err := openDB(ctx, cfg, "", false)
	if err != nil {
		return err
	}
	defer closeDB(db, log) // last: after the sessions and backends are gone
	tokens, err := openTokens(db, cfg, log)
	if err != nil {
		return err
	}
	users, err := auth.NewUsers(db.Users())
	if err != nil {
		return err
	}
	for _, w := range tokens.Warnings() {
		log.Warn(w)
	}

	var g *proxy.Gateway
	scanner, err := newDLP(cfg, log)
	if err != nil {
		return err
	}
	pol, err := newPolicy(ctx, cfg, log, func() { g.ListsChanged() })
	if err != nil {
		return err
	}
	auditor := newAuditor(cfg, db, log)
	queue := newApprovals(cfg, db, auditor, pol, log)
	g = proxy.New(proxy.Options{Config: cfg, Logger: log, Stages: stages(log, auditor, scanner, pol, queue), Version: version})
	front := frontend.NewHTTP(frontend.HTTPOptions{Gateway: g, Config: cfg, Tokens: tokens, Logger: log,
		Users: users, API: apiHandler(cfg, db, queue, log), Reporters: reporters(scanner, pol, queue)})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           front.Handler(),
		ReadHeaderTimeout: cfg.HTTP.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.HTTP.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	fmt.Fprintf(stderr, "sallyport: MCP endpoint http://%s/mcp\n", ln.Addr())
	fmt.Fprintf(stderr, "sallyport: audit log in %s (sallyport audit verify|export; GET /api/audit for groups auditor, admin)\n", db.Path())
	fmt.Fprintf(stderr, "sallyport: policy: %s, version %.12s (sallyport policy test|eval|replay|check)\n", pol.Current().Source(), pol.Current().Version())
	if scanner == nil {
		fmt.Fprintln(stderr, "sallyport: DLP: disabled (dlp.disabled)")
	} else {
		st, _ := scanner.Status()
		fmt.Fprintf(stderr, "sallyport: DLP: %d detectors, %d rules (sallyport dlp detectors|scan)\n", st.(dlp.Status).Detectors, len(cfg.DLP.Rules))
	}
	if *cfgPath == "" {
		demoReviewer(ctx, db.Users(), users, db.Path(), ln.Addr().String(), stderr, log)
	} else {
		fmt.Fprintf(stderr, "sallyport: approvals: GET /api/approvals (reviewers in group %q by default); sallyport approvals list -c %s\n", cfg.Approvals.Reviewers, displayPath(cfg.Path))
	}
	if cfg.Auth.Anonymous {
		fmt.Fprintf(stderr, "sallyport: anonymous access is enabled (loopback only)\n")
	} else {
		fmt.Fprintf(stderr, "sallyport: clients need a bearer token: sallyport tokens create -c %s --principal NAME\n", displayPath(cfg.Path))
	}
	log.Info("serving", slog.String("addr", ln.Addr().String()), slog.Int("backends", len(cfg.Backends)), slog.String("version", version))

	ctx, cancel := signalContext(ctx, log)
	defer cancel()
	go retain(ctx, db.Audit(), cfg.Audit.Retention.D(), log)
	go pol.Watch(ctx, cfg.Policy.Reload.D())
	go queue.Run(ctx)
	select {
	case <-ctx.Done():
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
	}
	// Sessions first (that ends their streams), then the listener, then
	// the shared backends.
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	queue.Stop()
	front.Close(sctx)
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	g.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

// demoReviewerName is the reviewer account the built-in demo creates.
const demoReviewerName = "reviewer"

// demoReviewer makes sure the demo has a reviewer account and says how to
// approve a held call: its password is printed once, when it is created.
func demoReviewer(ctx context.Context, store gateway.UserStore, users *auth.Users, dbPath, addr string, stderr io.Writer, log *slog.Logger) {
	password := auth.GeneratePassword()
	_, err := store.User(ctx, demoReviewerName)
	switch {
	case err == nil:
		err = gateway.ErrUserExists // no password hashed for nothing
	case errors.Is(err, gateway.ErrUserNotFound):
		_, err = users.Add(demoReviewerName, []string{config.DefaultApprovalReviewers}, password)
	}
	switch {
	case err == nil:
		fmt.Fprintf(stderr, "sallyport: demo reviewer account %q, password %s (shown only this once; stored hashed in %s)\n", demoReviewerName, password, dbPath)
	case errors.Is(err, gateway.ErrUserExists):
		fmt.Fprintf(stderr, "sallyport: demo reviewer account %q (its password was shown when it was created; a new one: bin/sallyport users passwd %s)\n", demoReviewerName, demoReviewerName)
	default:
		log.Warn("the demo reviewer account could not be created", slog.String("err", err.Error()))
		return
	}
	fmt.Fprintf(stderr, "sallyport: demo__delete_records waits for a reviewer. Approve it with:\n")
	fmt.Fprintf(stderr, "sallyport:   bin/sallyport approvals list            then   bin/sallyport approvals approve ID --as %s   (asks for its password)\n", demoReviewerName)
	fmt.Fprintf(stderr, "sallyport:   or: curl -u %s:PASSWORD -H 'Content-Type: application/json' -d '{\"comment\":\"ok\"}' http://%s/api/approvals/ID/approve\n", demoReviewerName, addr)
}

func displayPath(p string) string {
	if p == "" {
		return "FILE"
	}
	return p
}

func runStdio(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("stdio")
	cfgPath := fs.String("c", "", "config file (default: the built-in demo)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log, closer, err := newLogger(cfg.Log.Level, cfg.Log.Format, cfg.Log.File, stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	db, err := openDB(ctx, cfg, "", false)
	if err != nil {
		return err
	}
	defer closeDB(db, log)
	var g *proxy.Gateway
	scanner, err := newDLP(cfg, log)
	if err != nil {
		return err
	}
	pol, err := newPolicy(ctx, cfg, log, func() { g.ListsChanged() })
	if err != nil {
		return err
	}
	auditor := newAuditor(cfg, db, log)
	queue := newApprovals(cfg, db, auditor, pol, log)
	g = proxy.New(proxy.Options{Config: cfg, Logger: log, Stages: stages(log, auditor, scanner, pol, queue), Version: version})
	ctx, cancel := signalContext(ctx, log)
	defer cancel()
	go retain(ctx, db.Audit(), cfg.Audit.Retention.D(), log)
	go pol.Watch(ctx, cfg.Policy.Reload.D())
	go queue.Run(ctx)
	p := gateway.Principal{ID: cfg.Stdio.Principal, Groups: cfg.Stdio.Groups, TokenID: "stdio"}
	lim := jsonrpc.Limits{MaxBytes: cfg.Limits.MaxMessageBytes.Int(), MaxDepth: cfg.Limits.MaxDepth}
	// A signal, not the client, ends the session: the queue stops first, so
	// that the session's held items stay pending when it closes.
	sessCtx, endSession := context.WithCancel(context.WithoutCancel(ctx))
	defer endSession()
	go func() {
		select {
		case <-ctx.Done():
			queue.Stop()
			endSession()
		case <-sessCtx.Done():
		}
	}()
	err = frontend.ServeStdio(sessCtx, g, p, stdin, stdout, lim, log)
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer scancel()
	g.Shutdown(sctx)
	return err
}

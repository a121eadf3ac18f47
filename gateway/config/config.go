package config

import (
	"net"
	"net/netip"
	"strings"
	"time"
)

// Defaults, as Default returns them.
const (
	DefaultListen             = "127.0.0.1:8750"
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "text"
	DefaultMaxMessageBytes    = 4 * MiB
	DefaultMaxDepth           = 64
	DefaultSessionIdleTimeout = Duration(30 * time.Minute)
	DefaultReadHeaderTimeout  = Duration(10 * time.Second)
	DefaultIdleTimeout        = Duration(120 * time.Second)
	DefaultMaxSessions        = 1000
	DefaultDatabase           = "sallyport.db"
	DefaultAuditArguments     = "full"
	DefaultAuditSynchronous   = "normal"
	DefaultBusyTimeout        = Duration(5 * time.Second)
	DefaultCheckpointEvery    = 1000
	DefaultAnonymousPrincipal = "anonymous"
	DefaultStdioPrincipal     = "local"
	DefaultIsolation          = IsolationSession
	DefaultStartupTimeout     = Duration(30 * time.Second)
	DefaultRequestTimeout     = Duration(60 * time.Second)
	DefaultShutdownTimeout    = Duration(5 * time.Second)
	DefaultPolicyQuery        = "data.sallyport.decision"
	DefaultPolicyTimeout      = Duration(100 * time.Millisecond)
	DefaultPolicyReload       = Duration(2 * time.Second)
	DefaultDLPMaxDecodeDepth  = 2
	DefaultDLPMaxDecodedBytes = 8 * MiB
	DefaultApprovalTimeout    = Duration(10 * time.Minute)
	DefaultApprovalMode       = "hold"
	DefaultApprovalReviewers  = "reviewers"
	DefaultApprovalMaxPending = 20
	DefaultApprovalProgress   = Duration(15 * time.Second)
)

// Backend transports.
const (
	TransportStdio = "stdio"
	TransportHTTP  = "http"
	TransportSSE   = "sse"
)

// Backend isolation modes.
const (
	// IsolationSession gives each client session its own backend leg.
	IsolationSession = "session"
	// IsolationShared serves every client session from one backend leg.
	IsolationShared = "shared"
)

// Config is Sallyport's configuration.
type Config struct {
	// Listen is the HTTP listener address for `serve`, host:port.
	Listen string `yaml:"listen"`
	Log    Log    `yaml:"log"`
	Limits Limits `yaml:"limits"`
	HTTP   HTTP   `yaml:"http"`
	Auth   Auth   `yaml:"auth"`
	// Database is the SQLite file holding the audit log and the client
	// tokens; default "sallyport.db" beside the config file, or in the
	// working directory for the built-in configuration.
	Database  string        `yaml:"database"`
	Audit     Audit         `yaml:"audit"`
	Policy    Policy        `yaml:"policy"`
	DLP       DLP           `yaml:"dlp"`
	Approvals Approvals     `yaml:"approvals"`
	Stdio     StdioFrontend `yaml:"stdio"`
	Backends  []Backend     `yaml:"backends"`
	// Path is the file the configuration was read from, "" for a built-in
	// one. Load resolves relative paths in the configuration
	// (Database, Auth.TokensFile, Log.File, Policy.Paths, Backend.Cwd) against its
	// directory.
	Path string `yaml:"-"`
}

// Log configures the gateway's own log.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error, default info
	Format string `yaml:"format"` // text|json, default text
	File   string `yaml:"file"`   // "" = stderr
}

// Limits bound what the gateway accepts from any peer.
type Limits struct {
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"` // default 4 MiB; 1 KiB..1 GiB
	MaxDepth        int      `yaml:"max_depth"`         // default 64; 8..1000
}

// HTTP configures the Streamable HTTP and SSE frontends.
type HTTP struct {
	// AllowedOrigins are exact origins, scheme://host[:port]. Requests
	// without an Origin header are allowed.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowedHosts is the Host header allow-list (host or host:port); see
	// Config.HostAllowList for the default when it is empty.
	AllowedHosts       []string `yaml:"allowed_hosts"`
	MaxBodyBytes       ByteSize `yaml:"max_body_bytes"`       // default Limits.MaxMessageBytes
	SessionIdleTimeout Duration `yaml:"session_idle_timeout"` // default 30m
	ReadHeaderTimeout  Duration `yaml:"read_header_timeout"`  // default 10s
	IdleTimeout        Duration `yaml:"idle_timeout"`         // default 120s
	MaxSessions        int      `yaml:"max_sessions"`         // default 1000
}

// Audit configures the audit log.
type Audit struct {
	// Arguments is "full" (canonical JSON arguments in every row, the
	// default) or "digest" (their SHA-256 only).
	Arguments string `yaml:"arguments"`
	// SampleNotifications, above 1, records one in so many progress, log
	// and resource-update notifications per session; default 1 (all).
	SampleNotifications int `yaml:"sample_notifications"`
	// Retention is how long rows are kept; 0 (the default) keeps them
	// forever.
	Retention Duration `yaml:"retention"`
	// Synchronous is "normal" (the default: a committed row survives a
	// crash or kill of the gateway process; after a power loss or kernel
	// crash the last commits may be lost) or "full" (it survives that too,
	// at the cost of an fsync per group commit).
	Synchronous string `yaml:"synchronous"`
	// BusyTimeout is how long a write waits for a lock held by another
	// process before the message is refused; default 5s.
	BusyTimeout Duration `yaml:"busy_timeout"`
	// Key, when set, keys a checkpoint MAC every CheckpointEvery rows, so
	// that a rewritten chain is detected by `sallyport audit verify` with
	// the key. At least 32 characters; give it with ${ENV}.
	Key string `yaml:"key"`
	// CheckpointEvery is the distance between checkpoint rows; default
	// 1000.
	CheckpointEvery int `yaml:"checkpoint_every"`
}

// Policy configures the Rego policy every message passes.
type Policy struct {
	// Paths are .rego files, data files (.json, .yaml) and directories of
	// them. Empty: the embedded default policy.
	Paths []string `yaml:"paths"`
	// Query is the decision to evaluate; default data.sallyport.decision.
	Query string `yaml:"query"`
	// Timeout bounds one evaluation; past it the message is denied.
	// Default 100ms.
	Timeout Duration `yaml:"timeout"`
	// Reload is how often the files are checked for changes; a changed set
	// is compiled in full and swapped in only when it compiles. Default 2s.
	Reload Duration `yaml:"reload"`
}

// DLP configures the scanner for PII and secrets every message passes.
type DLP struct {
	// Disabled turns the DLP stage off (it is on by default).
	Disabled bool `yaml:"disabled"`
	// Detectors are the detector ids to run; empty runs them all.
	Detectors []string `yaml:"detectors"`
	// MaxDecodeDepth bounds nested decoding of base64, hex and URL-encoded
	// runs; default 2. -1 turns decoding off.
	MaxDecodeDepth int `yaml:"max_decode_depth"`
	// MaxDecodedBytes bounds what decoding may produce for one message; a
	// message that needs more is refused. Default 8MiB.
	MaxDecodedBytes ByteSize `yaml:"max_decoded_bytes"`
	// HashKey is the HMAC key of the hash action (at least 16 bytes);
	// HashKeyFile reads it from a file instead. Required when a rule
	// hashes.
	HashKey     string `yaml:"hash_key"`
	HashKeyFile string `yaml:"hash_key_file"`
	// Rules decide the action for each finding: the first rule that
	// matches it wins; findings no rule matches get the built-in default
	// (see the dlp package).
	Rules []DLPRule `yaml:"rules"`
}

// DLPRule matches findings and says what to do with them. Empty matchers
// match everything.
type DLPRule struct {
	// Detectors are detector ids, or "pii" / "secret" for a category.
	Detectors []string `yaml:"detectors"`
	// Direction is client_to_backend or backend_to_client; empty: both.
	Direction string `yaml:"direction"`
	// Backends are backend id patterns (path.Match).
	Backends []string `yaml:"backends"`
	// Tools are patterns (path.Match) of the target as the backend knows
	// it: a tool or prompt name, or a resource URI.
	Tools []string `yaml:"tools"`
	// Fields are paths into the message (params.arguments.to,
	// result.content[*].text); a finding at or below one matches.
	Fields []string `yaml:"fields"`
	// Values are exact matched values, or "sha256:<hex>" of one, so that
	// the value need not be written here.
	Values []string `yaml:"values"`
	// Patterns are regular expressions (RE2) a matched value must match
	// in full.
	Patterns []string `yaml:"patterns"`
	// Action is block, redact, mask, hash, flag, or allow (not a finding:
	// the allowlist).
	Action string `yaml:"action"`
}

// Approvals configures the human approval queue.
type Approvals struct {
	// Timeout is how long a held call waits for a decision when policy
	// names no timeout; default 10m.
	Timeout Duration `yaml:"timeout"`
	// Mode is hold (the default: the request is held open; a client that
	// gives up cancels the item) or retry (the item stays pending, and the
	// same principal's identical call attaches to it) when policy names
	// none.
	Mode string `yaml:"mode"`
	// Reviewers is the group that decides when policy names none; default
	// "reviewers".
	Reviewers string `yaml:"reviewers"`
	// MaxPendingPerPrincipal caps one principal's pending items; past it a
	// call that needs approval is refused. Default 20.
	MaxPendingPerPrincipal int `yaml:"max_pending_per_principal"`
	// AllowSelfApproval lets a reviewer approve their own call. Off by
	// default: separation of duties.
	AllowSelfApproval bool `yaml:"allow_self_approval"`
	// ProgressInterval is how often a waiting client that asked for
	// progress gets a progress notification; default 15s.
	ProgressInterval Duration `yaml:"progress_interval"`
	// Webhooks are posted each new pending item (no argument values).
	Webhooks []Webhook `yaml:"webhooks"`
	// PublicURL is the gateway's address as reviewers reach it, for links
	// in webhooks; default http://<listen>.
	PublicURL string `yaml:"public_url"`
}

// Webhook is an endpoint told of each new pending approval.
type Webhook struct {
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
}

// Auth configures how HTTP clients authenticate.
type Auth struct {
	// TokensFile is a tokens file written by an earlier Sallyport: `serve`
	// moves its tokens into the database. Tokens now live in the database.
	TokensFile string `yaml:"tokens_file"`
	// Anonymous allows unauthenticated HTTP clients. It is only valid when
	// Listen is a loopback address.
	Anonymous bool `yaml:"anonymous"`
	// AnonymousPrincipal is the principal anonymous clients act as; default
	// "anonymous".
	AnonymousPrincipal string `yaml:"anonymous_principal"`
}

// StdioFrontend names the principal a stdio client acts as.
type StdioFrontend struct {
	Principal string   `yaml:"principal"` // default "local"
	Groups    []string `yaml:"groups"`
}

// Backend is one MCP server behind the gateway.
type Backend struct {
	// ID names the backend: ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$, 1..32
	// characters, unique.
	ID string `yaml:"id"`
	// Transport is stdio, http or sse.
	Transport string `yaml:"transport"`
	// Command is the program to run (stdio only, required there).
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"`
	// EnvPassthrough names gateway environment variables passed to the
	// process, besides a fixed safe base set (PATH HOME USER LOGNAME LANG
	// LC_ALL TZ TMPDIR).
	EnvPassthrough []string `yaml:"env_passthrough"`
	Cwd            string   `yaml:"cwd"`
	// URL is the server's endpoint (http and sse only, required there).
	URL string `yaml:"url"`
	// Headers are sent with every request (http and sse only).
	Headers map[string]string `yaml:"headers"`
	// Isolation is session (a backend leg per client session, the default)
	// or shared.
	Isolation string   `yaml:"isolation"`
	Timeouts  Timeouts `yaml:"timeouts"`
	// Labels are given to policy as input.backend.labels.
	Labels map[string]string `yaml:"labels"`
	// Trusted marks the backend as one whose read-only tools the default
	// policy lets anyone use (input.backend.trusted).
	Trusted bool `yaml:"trusted"`
	// ReadOnlyTools and DestructiveTools name this backend's tools (as the
	// backend names them; path.Match patterns) that the configuration, not
	// the backend's own annotations, declares read-only or destructive
	// (input.tool.read_only, input.tool.destructive).
	ReadOnlyTools    []string `yaml:"read_only_tools"`
	DestructiveTools []string `yaml:"destructive_tools"`
	MaxMessageBytes  ByteSize `yaml:"max_message_bytes"` // default Limits.MaxMessageBytes
	// Unprefixed lists this backend's tools and prompts under their own
	// names instead of <id>__<name>, for clients that need a backend's
	// names unchanged. At most one backend may set it; a namespaced name
	// always wins over an unprefixed one.
	Unprefixed bool `yaml:"unprefixed"`
}

// Timeouts bound a backend's start, requests and shutdown.
type Timeouts struct {
	// Startup bounds process start plus the initialize handshake; default 30s.
	Startup Duration `yaml:"startup"`
	// Request bounds one request to the backend; default 60s.
	Request Duration `yaml:"request"`
	// Shutdown is the grace after closing stdin before SIGTERM, and again
	// before SIGKILL; default 5s.
	Shutdown Duration `yaml:"shutdown"`
}

// Default returns a configuration with every default filled in and no
// backends.
func Default() *Config {
	c := &Config{}
	c.applyDefaults()
	return c
}

// Demo returns the built-in configuration `sallyport serve` uses without -c:
// the default loopback listener with anonymous access, and one stdio
// backend "demo" that runs executable with demo-server --sandbox
// sandboxDir.
func Demo(executable, sandboxDir string) *Config {
	c := &Config{
		Auth: Auth{Anonymous: true},
		Backends: []Backend{{
			ID:        "demo",
			Transport: TransportStdio,
			Command:   executable,
			Args:      []string{"demo-server", "--sandbox", sandboxDir},
			Labels:    map[string]string{"env": "demo"},
			// The default policy lets anyone, anonymous demo users
			// included, use a trusted backend's read-only tools, and asks
			// for an approval before a destructive one.
			Trusted:          true,
			ReadOnlyTools:    []string{"read_file", "list_files", "lookup_customer", "generate_report"},
			DestructiveTools: []string{"delete_records"},
		}},
		// The demo's customer records reach clients with their contact
		// and card details redacted; everything else gets the DLP
		// defaults (secrets blocked toward backends, redacted toward
		// clients).
		DLP: DLP{Rules: []DLPRule{{
			Detectors: []string{"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"},
			Direction: "backend_to_client",
			Backends:  []string{"demo"},
			Action:    "redact",
		}}},
	}
	c.applyDefaults()
	return c
}

// applyDefaults fills every zero field that has a default.
func (c *Config) applyDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.Log.Level, DefaultLogLevel)
	setDefault(&c.Log.Format, DefaultLogFormat)
	setDefault(&c.Limits.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.Limits.MaxDepth, DefaultMaxDepth)
	setDefault(&c.HTTP.MaxBodyBytes, c.Limits.MaxMessageBytes)
	setDefault(&c.HTTP.SessionIdleTimeout, DefaultSessionIdleTimeout)
	setDefault(&c.HTTP.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&c.HTTP.IdleTimeout, DefaultIdleTimeout)
	setDefault(&c.HTTP.MaxSessions, DefaultMaxSessions)
	setDefault(&c.Database, DefaultDatabase)
	setDefault(&c.Audit.Arguments, DefaultAuditArguments)
	setDefault(&c.Audit.SampleNotifications, 1)
	setDefault(&c.Audit.Synchronous, DefaultAuditSynchronous)
	setDefault(&c.Audit.BusyTimeout, DefaultBusyTimeout)
	setDefault(&c.Audit.CheckpointEvery, DefaultCheckpointEvery)
	setDefault(&c.Auth.AnonymousPrincipal, DefaultAnonymousPrincipal)
	setDefault(&c.DLP.MaxDecodeDepth, DefaultDLPMaxDecodeDepth)
	setDefault(&c.DLP.MaxDecodedBytes, DefaultDLPMaxDecodedBytes)
	setDefault(&c.Stdio.Principal, DefaultStdioPrincipal)
	setDefault(&c.Policy.Query, DefaultPolicyQuery)
	setDefault(&c.Policy.Timeout, DefaultPolicyTimeout)
	setDefault(&c.Policy.Reload, DefaultPolicyReload)
	setDefault(&c.Approvals.Timeout, DefaultApprovalTimeout)
	setDefault(&c.Approvals.Mode, DefaultApprovalMode)
	setDefault(&c.Approvals.Reviewers, DefaultApprovalReviewers)
	setDefault(&c.Approvals.MaxPendingPerPrincipal, DefaultApprovalMaxPending)
	setDefault(&c.Approvals.ProgressInterval, DefaultApprovalProgress)
	for i := range c.Backends {
		c.Backends[i].applyDefaults(c.Limits.MaxMessageBytes)
	}
}

func (b *Backend) applyDefaults(maxMessageBytes ByteSize) {
	setDefault(&b.Isolation, DefaultIsolation)
	setDefault(&b.Timeouts.Startup, DefaultStartupTimeout)
	setDefault(&b.Timeouts.Request, DefaultRequestTimeout)
	setDefault(&b.Timeouts.Shutdown, DefaultShutdownTimeout)
	setDefault(&b.MaxMessageBytes, maxMessageBytes)
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// IsLoopbackListen reports whether Listen is on a loopback address:
// "localhost", 127.0.0.0/8 or ::1. An empty host (all interfaces) is not.
func (c *Config) IsLoopbackListen() bool {
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return false
	}
	return isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// HostAllowList returns the Host header values the HTTP frontend accepts.
// It is HTTP.AllowedHosts when that is set. Otherwise, for a loopback
// Listen, it is "localhost", "127.0.0.1" and "[::1]", each without a port
// and with Listen's port (unless that port is 0); for any other Listen it is
// nil, and Validate reports http.allowed_hosts as required.
func (c *Config) HostAllowList() []string {
	if len(c.HTTP.AllowedHosts) > 0 {
		return append([]string(nil), c.HTTP.AllowedHosts...)
	}
	if !c.IsLoopbackListen() {
		return nil
	}
	_, port, _ := net.SplitHostPort(c.Listen)
	var hosts []string
	for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
		hosts = append(hosts, h)
		if port != "" && port != "0" {
			hosts = append(hosts, h+":"+port)
		}
	}
	return hosts
}

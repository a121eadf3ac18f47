package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	pathpkg "path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// FieldError is a problem with one configuration field.
type FieldError struct {
	// Field is the field's path, e.g. "backends[2].url".
	Field string
	// Value is the offending value; it is "" for secret-bearing fields
	// (backend headers and env).
	Value string
	Err   error
}

// Error formats e as `backends[2].url "ftp://x": scheme must be http or https`.
func (e *FieldError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("%s %q: %v", e.Field, e.Value, e.Err)
	}
	return e.Field + ": " + e.Err.Error()
}

// Unwrap returns e.Err.
func (e *FieldError) Unwrap() error { return e.Err }

var (
	idRE       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
)

// maxIDLength bounds a backend id, so that namespaced names
// (<backend>__<tool>) stay short.
const maxIDLength = 32

// refusedHeaders are headers a backend's configuration may not set: the
// gateway owns them (Host, framing, MCP session and version) or they are
// hop-by-hop.
var refusedHeaders = []string{
	"Host", "Content-Length", "Mcp-Session-Id", "Mcp-Protocol-Version",
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te", "Trailer", "Upgrade",
}

// validator collects field errors.
type validator struct{ errs []*FieldError }

func (v *validator) add(field, value string, err error) {
	v.errs = append(v.errs, &FieldError{Field: field, Value: value, Err: err})
}

func (v *validator) addf(field, value, format string, args ...any) {
	v.add(field, value, fmt.Errorf(format, args...))
}

// Validate checks every field and returns every problem found, as an
// errors.Join of *FieldError; nil means the configuration is usable.
// Validate does not fill in defaults: Parse, Load, Default and Demo do.
func (c *Config) Validate() error {
	errs := c.validate()
	joined := make([]error, len(errs))
	for i, e := range errs {
		joined[i] = e
	}
	return errors.Join(joined...)
}

func (c *Config) validate() []*FieldError {
	v := &validator{}
	listenOK := true
	if err := checkListen(c.Listen); err != nil {
		v.add("listen", c.Listen, err)
		listenOK = false
	}
	oneOf(v, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(v, "log.format", c.Log.Format, "text", "json")
	noNUL(v, "log.file", c.Log.File)
	sizeRange(v, "limits.max_message_bytes", c.Limits.MaxMessageBytes)
	if d := c.Limits.MaxDepth; d < 8 || d > 1000 {
		v.addf("limits.max_depth", strconv.Itoa(d), "must be between 8 and 1000")
	}

	for i, o := range c.HTTP.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			v.add(fmt.Sprintf("http.allowed_origins[%d]", i), o, err)
		}
	}
	duplicates(v, "http.allowed_origins", c.HTTP.AllowedOrigins, false)
	for i, h := range c.HTTP.AllowedHosts {
		if err := checkHostEntry(h); err != nil {
			v.add(fmt.Sprintf("http.allowed_hosts[%d]", i), h, err)
		}
	}
	if listenOK && len(c.HTTP.AllowedHosts) == 0 && !c.IsLoopbackListen() {
		v.add("http.allowed_hosts", "", errors.New("required when listen is not loopback"))
	}
	sizeRange(v, "http.max_body_bytes", c.HTTP.MaxBodyBytes)
	positive(v, "http.session_idle_timeout", c.HTTP.SessionIdleTimeout)
	positive(v, "http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positive(v, "http.idle_timeout", c.HTTP.IdleTimeout)
	if c.HTTP.MaxSessions < 1 {
		v.addf("http.max_sessions", strconv.Itoa(c.HTTP.MaxSessions), "must be at least 1")
	}

	noNUL(v, "auth.tokens_file", c.Auth.TokensFile)
	if c.Database == "" {
		v.add("database", "", errors.New("required"))
	} else if strings.ContainsAny(c.Database, "?#") {
		v.add("database", c.Database, errors.New("must not contain ? or #"))
	}
	noNUL(v, "database", c.Database)
	if a := c.Audit.Arguments; a != "full" && a != "digest" {
		v.add("audit.arguments", a, errors.New(`must be "full" or "digest"`))
	}
	if c.Audit.SampleNotifications < 1 {
		v.addf("audit.sample_notifications", strconv.Itoa(c.Audit.SampleNotifications), "must be at least 1")
	}
	if c.Audit.Retention < 0 {
		v.add("audit.retention", c.Audit.Retention.String(), errors.New("must not be negative"))
	} else if c.Audit.Retention > 0 && c.Audit.Retention.D() < time.Hour {
		v.add("audit.retention", c.Audit.Retention.String(), errors.New("must be at least 1h (or 0: keep forever)"))
	}
	if s := c.Audit.Synchronous; s != "full" && s != "normal" {
		v.add("audit.synchronous", s, errors.New(`must be "full" or "normal"`))
	}
	positive(v, "audit.busy_timeout", c.Audit.BusyTimeout)
	if k := c.Audit.Key; k != "" && len(k) < 32 {
		v.add("audit.key", "(hidden)", errors.New("must be at least 32 characters"))
	}
	for i, p := range c.Policy.Paths {
		field := fmt.Sprintf("policy.paths[%d]", i)
		if p == "" {
			v.add(field, "", errors.New("must not be empty"))
		}
		noNUL(v, field, p)
	}
	duplicates(v, "policy.paths", c.Policy.Paths, false)
	if q := c.Policy.Query; !policyQueryRE.MatchString(q) {
		v.add("policy.query", q, errors.New("must be a data reference such as data.sallyport.decision"))
	}
	if t := c.Policy.Timeout.D(); t < time.Millisecond || t > 10*time.Second {
		v.add("policy.timeout", c.Policy.Timeout.String(), errors.New("must be between 1ms and 10s"))
	}
	if r := c.Policy.Reload.D(); r < 100*time.Millisecond {
		v.add("policy.reload", c.Policy.Reload.String(), errors.New("must be at least 100ms"))
	}
	c.DLP.validate(v)
	c.Approvals.validate(v)
	if c.Audit.CheckpointEvery < 1 {
		v.addf("audit.checkpoint_every", strconv.Itoa(c.Audit.CheckpointEvery), "must be at least 1")
	}
	if c.Auth.Anonymous && listenOK && !c.IsLoopbackListen() {
		v.add("auth.anonymous", "true", errors.New("only allowed when listen is a loopback address"))
	}
	checkName(v, "auth.anonymous_principal", c.Auth.AnonymousPrincipal)
	checkName(v, "stdio.principal", c.Stdio.Principal)
	for i, g := range c.Stdio.Groups {
		checkName(v, fmt.Sprintf("stdio.groups[%d]", i), g)
	}
	duplicates(v, "stdio.groups", c.Stdio.Groups, false)

	seen := make(map[string]int)
	unprefixed := -1
	for i := range c.Backends {
		b := &c.Backends[i]
		path := fmt.Sprintf("backends[%d]", i)
		b.validate(v, path)
		if j, ok := seen[b.ID]; ok && b.ID != "" {
			v.addf(path+".id", b.ID, "duplicate: also the id of backends[%d]", j)
		} else {
			seen[b.ID] = i
		}
		if b.Unprefixed {
			if unprefixed >= 0 {
				v.addf(path+".unprefixed", "true", "only one backend may be unprefixed; backends[%d].unprefixed is set too", unprefixed)
			} else {
				unprefixed = i
			}
		}
	}
	return v.errs
}

// validate checks the approvals section.
func (a *Approvals) validate(v *validator) {
	if t := a.Timeout.D(); t < time.Second || t > 7*24*time.Hour {
		v.add("approvals.timeout", a.Timeout.String(), errors.New("must be between 1s and 7d"))
	}
	oneOf(v, "approvals.mode", a.Mode, "hold", "retry")
	checkName(v, "approvals.reviewers", a.Reviewers)
	if n := a.MaxPendingPerPrincipal; n < 1 || n > 10000 {
		v.addf("approvals.max_pending_per_principal", strconv.Itoa(n), "must be between 1 and 10000")
	}
	if p := a.ProgressInterval.D(); p < 100*time.Millisecond || p > 15*time.Second {
		v.add("approvals.progress_interval", a.ProgressInterval.String(), errors.New("must be between 100ms and 15s (clients reset their timeouts on progress)"))
	}
	if a.PublicURL != "" {
		if u, err := url.Parse(a.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("approvals.public_url", a.PublicURL, errors.New("must be an http or https URL"))
		}
	}
	for i, w := range a.Webhooks {
		field := fmt.Sprintf("approvals.webhooks[%d]", i)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(field+".url", w.URL, errors.New("must be an http or https URL"))
		}
		for _, k := range sortedKeys(w.Headers) {
			if k == "" || strings.ContainsAny(k, " :\r\n") {
				v.add(field+".headers", k, errors.New("invalid header name"))
			}
		}
	}
}

// policyQueryRE matches the data references policy.query may name.
var policyQueryRE = regexp.MustCompile(`^data(\.[A-Za-z_][A-Za-z0-9_]*)+$`)

func (b *Backend) validate(v *validator, path string) {
	f := func(name string) string { return path + "." + name }
	switch {
	case b.ID == "":
		v.add(f("id"), "", errors.New("required"))
	case len(b.ID) > maxIDLength:
		v.addf(f("id"), b.ID, "longer than %d characters", maxIDLength)
	case !idRE.MatchString(b.ID):
		v.add(f("id"), b.ID, errors.New("must be lowercase letters, digits and inner hyphens"))
	}

	for _, list := range []struct {
		name     string
		patterns []string
	}{{"read_only_tools", b.ReadOnlyTools}, {"destructive_tools", b.DestructiveTools}} {
		for i, pat := range list.patterns {
			if _, err := pathpkg.Match(pat, ""); err != nil || pat == "" {
				v.add(fmt.Sprintf("%s[%d]", f(list.name), i), pat, errors.New("must be a tool name or a path.Match pattern"))
			}
		}
	}
	for _, pat := range b.ReadOnlyTools {
		if slices.Contains(b.DestructiveTools, pat) {
			v.add(f("read_only_tools"), pat, errors.New("also listed in destructive_tools"))
		}
	}

	switch b.Transport {
	case TransportStdio:
		if b.Command == "" {
			v.add(f("command"), "", errors.New("required for transport stdio"))
		}
		if b.URL != "" {
			v.add(f("url"), "", errors.New("not allowed for transport stdio"))
		}
		if len(b.Headers) > 0 {
			v.add(f("headers"), "", errors.New("not allowed for transport stdio"))
		}
	case TransportHTTP, TransportSSE:
		if b.URL == "" {
			v.addf(f("url"), "", "required for transport %s", b.Transport)
		}
		for _, stdioOnly := range []struct {
			name string
			set  bool
		}{
			{"command", b.Command != ""}, {"args", len(b.Args) > 0}, {"env", len(b.Env) > 0},
			{"env_passthrough", len(b.EnvPassthrough) > 0}, {"cwd", b.Cwd != ""},
		} {
			if stdioOnly.set {
				v.addf(f(stdioOnly.name), "", "not allowed for transport %s", b.Transport)
			}
		}
	case "":
		v.add(f("transport"), "", errors.New("required: stdio, http or sse"))
	default:
		v.add(f("transport"), b.Transport, errors.New("must be stdio, http or sse"))
	}

	noNUL(v, f("command"), b.Command)
	for i, a := range b.Args {
		noNUL(v, fmt.Sprintf("%s[%d]", f("args"), i), a)
	}
	noNUL(v, f("cwd"), b.Cwd)
	for _, k := range sortedKeys(b.Env) {
		if !envNameRE.MatchString(k) {
			v.add(mapPath(f("env"), k), "", errors.New("not a valid environment variable name"))
		}
		if strings.ContainsRune(b.Env[k], 0) {
			v.add(mapPath(f("env"), k), "", errors.New("contains a NUL byte"))
		}
	}
	for i, k := range b.EnvPassthrough {
		if !envNameRE.MatchString(k) {
			v.add(fmt.Sprintf("%s[%d]", f("env_passthrough"), i), k, errors.New("not a valid environment variable name"))
		}
	}
	duplicates(v, f("env_passthrough"), b.EnvPassthrough, false)

	if b.URL != "" {
		if shown, err := checkBackendURL(b.URL); err != nil {
			v.add(f("url"), shown, err)
		}
	}
	for _, k := range sortedKeys(b.Headers) {
		p := mapPath(f("headers"), k)
		switch {
		case !isToken(k):
			v.add(p, "", errors.New("not a valid header name"))
		case slices.ContainsFunc(refusedHeaders, func(r string) bool { return strings.EqualFold(r, k) }):
			v.add(p, "", errors.New("set by the gateway; not allowed here"))
		}
		if !validHeaderValue(b.Headers[k]) {
			v.add(p, "", errors.New("value contains a control character"))
		}
	}
	duplicates(v, f("headers"), sortedKeys(b.Headers), true)

	oneOf(v, f("isolation"), b.Isolation, IsolationSession, IsolationShared)
	positive(v, f("timeouts.startup"), b.Timeouts.Startup)
	positive(v, f("timeouts.request"), b.Timeouts.Request)
	positive(v, f("timeouts.shutdown"), b.Timeouts.Shutdown)
	for _, k := range sortedKeys(b.Labels) {
		p := mapPath(f("labels"), k)
		if !labelKeyRE.MatchString(k) {
			v.add(p, "", errors.New("label names are 1..63 letters, digits, '.', '_', '/' or '-', starting with a letter or digit"))
		}
		if val := b.Labels[k]; len(val) > 256 || !printable(val) {
			v.add(p, val, errors.New("label values are at most 256 bytes of printable text"))
		}
	}
	sizeRange(v, f("max_message_bytes"), b.MaxMessageBytes)
}

// DLP actions a rule may name.
var dlpActions = []string{"block", "redact", "mask", "hash", "flag", "allow"}

func (d *DLP) validate(v *validator) {
	if d.MaxDecodeDepth < -1 || d.MaxDecodeDepth > 4 {
		v.addf("dlp.max_decode_depth", strconv.Itoa(d.MaxDecodeDepth), "must be between -1 (off) and 4")
	}
	if d.MaxDecodedBytes < KiB || d.MaxDecodedBytes > GiB {
		v.add("dlp.max_decoded_bytes", d.MaxDecodedBytes.String(), errors.New("must be between 1KiB and 1GiB"))
	}
	if d.HashKey != "" && d.HashKeyFile != "" {
		v.add("dlp.hash_key_file", d.HashKeyFile, errors.New("set hash_key or hash_key_file, not both"))
	}
	if k := d.HashKey; k != "" && len(k) < 16 {
		v.add("dlp.hash_key", "(hidden)", errors.New("must be at least 16 characters"))
	}
	noNUL(v, "dlp.hash_key_file", d.HashKeyFile)
	for i, id := range d.Detectors {
		if id == "" {
			v.add(fmt.Sprintf("dlp.detectors[%d]", i), "", errors.New("must not be empty"))
		}
	}
	duplicates(v, "dlp.detectors", d.Detectors, false)
	hashes := false
	for i, r := range d.Rules {
		f := func(name string) string { return fmt.Sprintf("dlp.rules[%d].%s", i, name) }
		if r.Action == "" {
			v.add(f("action"), "", fmt.Errorf("is required: one of %s", strings.Join(dlpActions, ", ")))
		} else {
			oneOf(v, f("action"), r.Action, dlpActions...)
		}
		hashes = hashes || r.Action == "hash"
		if r.Direction != "" {
			oneOf(v, f("direction"), r.Direction, "client_to_backend", "backend_to_client")
		}
		for j, p := range append(slices.Clip(r.Backends), r.Tools...) {
			if _, err := pathpkg.Match(p, ""); err != nil || p == "" {
				field := f(fmt.Sprintf("backends[%d]", j))
				if j >= len(r.Backends) {
					field = f(fmt.Sprintf("tools[%d]", j-len(r.Backends)))
				}
				v.add(field, p, errors.New("must be a non-empty path.Match pattern"))
			}
		}
		for j, p := range r.Patterns {
			if _, err := regexp.Compile(p); err != nil || p == "" {
				v.addf(f(fmt.Sprintf("patterns[%d]", j)), p, "must be a regular expression (RE2): %v", err)
			}
		}
		for j, val := range r.Values {
			if val == "" {
				v.add(f(fmt.Sprintf("values[%d]", j)), "", errors.New("must not be empty"))
			}
		}
		if (len(r.Values) > 0 || len(r.Patterns) > 0) && r.Action != "allow" && r.Action != "flag" {
			// Values and patterns narrow an allowlist; a rule that acts
			// harder on some values only would read as a weaker default.
			v.add(f("action"), r.Action, errors.New("rules with values or patterns must allow or flag"))
		}
	}
	if hashes && d.HashKey == "" && d.HashKeyFile == "" {
		v.add("dlp.hash_key", "", errors.New("is required when a rule hashes"))
	}
}

func oneOf(v *validator, field, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.addf(field, value, "must be one of %s", strings.Join(allowed, ", "))
	}
}

func positive(v *validator, field string, d Duration) {
	if d <= 0 {
		v.add(field, d.String(), errors.New("must be positive"))
	}
}

func sizeRange(v *validator, field string, b ByteSize) {
	if b < KiB || b > GiB {
		v.add(field, b.String(), errors.New("must be between 1KiB and 1GiB"))
	}
}

func noNUL(v *validator, field, value string) {
	if strings.ContainsRune(value, 0) {
		v.add(field, "", errors.New("contains a NUL byte"))
	}
}

func checkName(v *validator, field, name string) {
	if !nameRE.MatchString(name) {
		v.add(field, name, errors.New("must be 1..128 letters, digits or . _ @ + = -, starting with a letter or digit"))
	}
}

// duplicates reports each repeated entry of list, compared case-insensitively
// when fold is set.
func duplicates(v *validator, field string, list []string, fold bool) {
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		k := s
		if fold {
			k = strings.ToLower(s)
		}
		if seen[k] {
			if fold {
				v.add(mapPath(field, s), "", errors.New("duplicate (names are case-insensitive)"))
			} else {
				v.add(field, s, errors.New("duplicate entry"))
			}
		}
		seen[k] = true
	}
}

// checkListen checks a listen address: host:port with a numeric port
// (0 picks a free one) and an IP address, a host name or nothing (all
// interfaces) as the host.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port, as in 127.0.0.1:8750")
	}
	if err := checkPort(port, true); err != nil {
		return err
	}
	if host != "" && !validHost(host) {
		return errors.New("host must be an IP address or a host name")
	}
	return nil
}

func checkPort(port string, zeroOK bool) error {
	n, err := strconv.Atoi(port)
	if !isDigits(port) || err != nil || n > 65535 || (n == 0 && !zeroOK) {
		return errors.New("port must be a number between 1 and 65535")
	}
	return nil
}

// validHost reports whether s is an IP address or a DNS host name.
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	if len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// checkOrigin checks an entry of http.allowed_origins: an origin exactly as
// a browser sends it, scheme://host[:port], lowercase, without a default
// port, path, query or fragment.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return errors.New("must be an origin, scheme://host[:port]")
	}
	if u.User != nil {
		return errors.New("must not contain credentials")
	}
	if u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return errors.New("must not have a path, query or fragment (not even a trailing /)")
	}
	if s != strings.ToLower(s) {
		return errors.New("must be lowercase, as browsers send it")
	}
	if err := checkAuthority(u); err != nil {
		return err
	}
	if p := u.Port(); (u.Scheme == "http" && p == "80") || (u.Scheme == "https" && p == "443") {
		return errors.New("must leave out the default port, as browsers do")
	}
	return nil
}

// checkAuthority checks the host and port of a parsed URL.
func checkAuthority(u *url.URL) error {
	if strings.HasSuffix(u.Host, ":") {
		return errors.New("empty port")
	}
	if p := u.Port(); p != "" {
		if err := checkPort(p, false); err != nil {
			return err
		}
	}
	h := u.Hostname()
	if strings.Contains(h, ":") && !strings.HasPrefix(u.Host, "[") {
		return errors.New("IPv6 addresses must be in brackets")
	}
	if !validHost(h) {
		return errors.New("host must be an IP address or a host name")
	}
	return nil
}

// checkHostEntry checks an entry of http.allowed_hosts: host or host:port,
// with IPv6 addresses in brackets.
func checkHostEntry(s string) error {
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		if err := checkPort(p, false); err != nil {
			return err
		}
		if strings.Contains(h, ":") && !strings.HasPrefix(s, "[") {
			return errors.New("IPv6 addresses must be in brackets")
		}
		host = h
	} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
		host = strings.TrimSuffix(inner, "]")
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return errors.New("brackets are only for IPv6 addresses")
		}
	} else if strings.Contains(s, ":") {
		return errors.New("must be host or host:port, with IPv6 addresses in brackets")
	}
	if !validHost(host) {
		return errors.New("host must be an IP address or a host name")
	}
	return nil
}

// checkBackendURL checks a backend URL. It returns the URL as it may be
// shown in an error, with any password redacted.
func checkBackendURL(s string) (shown string, err error) {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			s = ""
		}
		return s, errors.New("not a valid URL")
	}
	shown = u.Redacted()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return shown, errors.New("scheme must be http or https")
	case u.Host == "":
		return shown, errors.New("must have a host")
	case u.User != nil:
		return shown, errors.New("must not contain credentials; use headers")
	case u.Fragment != "":
		return shown, errors.New("must not have a fragment")
	}
	return shown, checkAuthority(u)
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control characters other
// than horizontal tab.
func validHeaderValue(s string) bool {
	for _, c := range []byte(s) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// mapPath names the entry key of the map at path: path.key, or
// path["key"] when key is not a plain word.
func mapPath(path, key string) string {
	plain := key != ""
	for _, c := range []byte(key) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if plain {
		if path == "" {
			return key
		}
		return path + "." + key
	}
	return fmt.Sprintf("%s[%q]", path, key)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func stdioBackend() Backend {
	b := Backend{ID: "fs", Transport: TransportStdio, Command: "npx"}
	b.applyDefaults(DefaultMaxMessageBytes)
	return b
}

func httpBackend() Backend {
	b := Backend{ID: "gh", Transport: TransportHTTP, URL: "https://api.example.com/mcp"}
	b.applyDefaults(DefaultMaxMessageBytes)
	return b
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(c *Config)
		// want lists the errors expected, each "field" or "field: text";
		// none means the config is valid.
		want []string
	}{
		{name: "the default config is valid", modify: func(c *Config) {}},
		{name: "a stdio and an http backend are valid", modify: func(c *Config) {
			c.Backends = []Backend{stdioBackend(), httpBackend()}
		}},
		{name: "an sse backend is valid", modify: func(c *Config) {
			b := httpBackend()
			b.Transport = TransportSSE
			c.Backends = []Backend{b}
		}},
		{name: "port 0 is allowed", modify: func(c *Config) { c.Listen = "127.0.0.1:0" }},
		{name: "an IPv6 loopback listen is allowed", modify: func(c *Config) { c.Listen = "[::1]:8750" }},
		{name: "a listen without a port is an error", modify: func(c *Config) { c.Listen = "127.0.0.1" },
			want: []string{"listen: must be host:port"}},
		{name: "a named port is an error", modify: func(c *Config) { c.Listen = "localhost:http" },
			want: []string{"listen: port must be a number"}},
		{name: "a port above 65535 is an error", modify: func(c *Config) { c.Listen = "localhost:65536" },
			want: []string{"listen: port must be a number"}},
		{name: "a listen host with a space is an error", modify: func(c *Config) { c.Listen = "my host:80" },
			want: []string{"listen: host must be"}},
		{name: "an unknown approvals mode is an error", modify: func(c *Config) { c.Approvals.Mode = "later" },
			want: []string{"approvals.mode"}},
		{name: "an approvals timeout below 1s is an error", modify: func(c *Config) { c.Approvals.Timeout = Duration(time.Millisecond) },
			want: []string{"approvals.timeout"}},
		{name: "a pending cap of 0 is an error", modify: func(c *Config) { c.Approvals.MaxPendingPerPrincipal = -1 },
			want: []string{"approvals.max_pending_per_principal"}},
		{name: "an invalid reviewers group is an error", modify: func(c *Config) { c.Approvals.Reviewers = "re viewers" },
			want: []string{"approvals.reviewers"}},
		{name: "a webhook that is not http is an error", modify: func(c *Config) { c.Approvals.Webhooks = []Webhook{{URL: "ftp://x"}} },
			want: []string{"approvals.webhooks[0].url"}},
		{name: "retry mode and an https webhook are valid", modify: func(c *Config) {
			c.Approvals.Mode = "retry"
			c.Approvals.Webhooks = []Webhook{{URL: "https://hooks.example.com/x", Headers: map[string]string{"Authorization": "Bearer x"}}}
		}},
		{name: "an unknown log level is an error", modify: func(c *Config) { c.Log.Level = "trace" },
			want: []string{"log.level"}},
		{name: "an unknown log format is an error", modify: func(c *Config) { c.Log.Format = "xml" },
			want: []string{"log.format"}},
		{name: "a message limit below 1KiB is an error", modify: func(c *Config) { c.Limits.MaxMessageBytes = 1000 },
			want: []string{"limits.max_message_bytes: must be between 1KiB and 1GiB"}},
		{name: "a message limit above 1GiB is an error", modify: func(c *Config) { c.Limits.MaxMessageBytes = GiB + 1 },
			want: []string{"limits.max_message_bytes"}},
		{name: "a depth limit out of range is an error", modify: func(c *Config) { c.Limits.MaxDepth = 1001 },
			want: []string{"limits.max_depth"}},
		{name: "exact origins are valid", modify: func(c *Config) {
			c.HTTP.AllowedOrigins = []string{"https://app.example.com", "http://localhost:6274", "http://[::1]:3000", "vscode-webview://abc"}
		}},
		{name: "an origin with a path is an error", modify: func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://app.example.com/"} },
			want: []string{"http.allowed_origins[0]: must not have a path"}},
		{name: "a wildcard origin is an error", modify: func(c *Config) { c.HTTP.AllowedOrigins = []string{"*"} },
			want: []string{"http.allowed_origins[0]: must be an origin"}},
		{name: "an uppercase origin is an error", modify: func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://App.example.com"} },
			want: []string{"http.allowed_origins[0]: must be lowercase"}},
		{name: "an origin with its default port is an error", modify: func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://x.example:443"} },
			want: []string{"http.allowed_origins[0]: must leave out the default port"}},
		{name: "an origin with credentials is an error", modify: func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://u@x.example"} },
			want: []string{"http.allowed_origins[0]: must not contain credentials"}},
		{name: "a duplicate origin is an error", modify: func(c *Config) { c.HTTP.AllowedOrigins = []string{"https://x.example", "https://x.example"} },
			want: []string{"http.allowed_origins: duplicate entry"}},
		{name: "hosts with and without ports are valid", modify: func(c *Config) {
			c.HTTP.AllowedHosts = []string{"gw.example.com", "gw.example.com:8750", "10.0.0.1", "[::1]", "[::1]:8750"}
		}},
		{name: "an unbracketed IPv6 host is an error", modify: func(c *Config) { c.HTTP.AllowedHosts = []string{"::1"} },
			want: []string{"http.allowed_hosts[0]: must be host or host:port"}},
		{name: "a URL as a host is an error", modify: func(c *Config) { c.HTTP.AllowedHosts = []string{"http://x"} },
			want: []string{"http.allowed_hosts[0]"}},
		{name: "a host with port 0 is an error", modify: func(c *Config) { c.HTTP.AllowedHosts = []string{"x:0"} },
			want: []string{"http.allowed_hosts[0]: port must be"}},
		{name: "a public listen without allowed hosts is an error", modify: func(c *Config) { c.Listen = ":8750" },
			want: []string{"http.allowed_hosts: required when listen is not loopback"}},
		{name: "a public listen with allowed hosts is valid", modify: func(c *Config) {
			c.Listen = "0.0.0.0:8750"
			c.HTTP.AllowedHosts = []string{"gw.example.com"}
		}},
		{name: "anonymous access on a public listen is an error", modify: func(c *Config) {
			c.Listen = "10.1.2.3:8750"
			c.HTTP.AllowedHosts = []string{"10.1.2.3:8750"}
			c.Auth.Anonymous = true
		}, want: []string{"auth.anonymous: only allowed when listen is a loopback address"}},
		{name: "anonymous access on localhost is valid", modify: func(c *Config) {
			c.Listen = "localhost:8750"
			c.Auth.Anonymous = true
		}},
		{name: "timeouts must be positive", modify: func(c *Config) {
			c.HTTP.IdleTimeout = -1
			c.HTTP.ReadHeaderTimeout = 0
			c.HTTP.SessionIdleTimeout = 0
		}, want: []string{"http.session_idle_timeout", "http.read_header_timeout", "http.idle_timeout"}},
		{name: "max sessions must be at least one", modify: func(c *Config) { c.HTTP.MaxSessions = 0 },
			want: []string{"http.max_sessions"}},
		{name: "body limit out of range is an error", modify: func(c *Config) { c.HTTP.MaxBodyBytes = 10 },
			want: []string{"http.max_body_bytes"}},
		{name: "a database is required", modify: func(c *Config) { c.Database = "" },
			want: []string{"database: required"}},
		{name: "audit settings are checked", modify: func(c *Config) {
			c.Audit.Arguments = "some"
			c.Audit.SampleNotifications = 0
			c.Audit.Retention = Duration(time.Minute)
			c.Audit.Synchronous = "off"
			c.Audit.Key = "short"
			c.Audit.CheckpointEvery = 0
		}, want: []string{"audit.arguments", "audit.sample_notifications", "audit.retention", "audit.synchronous", "audit.key", "audit.checkpoint_every"}},
		{name: "principal and group names are checked", modify: func(c *Config) {
			c.Auth.AnonymousPrincipal = "any one"
			c.Stdio.Principal = ""
			c.Stdio.Groups = []string{"dev", "dev", "-x"}
		}, want: []string{"auth.anonymous_principal", "stdio.principal", "stdio.groups[2]", "stdio.groups: duplicate entry"}},
		{name: "a backend id is required", modify: func(c *Config) { b := stdioBackend(); b.ID = ""; c.Backends = []Backend{b} },
			want: []string{"backends[0].id: required"}},
		{name: "a backend id with uppercase is an error", modify: func(c *Config) { b := stdioBackend(); b.ID = "Fs"; c.Backends = []Backend{b} },
			want: []string{"backends[0].id: must be lowercase letters, digits and inner hyphens"}},
		{name: "a backend id ending in a hyphen is an error", modify: func(c *Config) { b := stdioBackend(); b.ID = "fs-"; c.Backends = []Backend{b} },
			want: []string{"backends[0].id"}},
		{name: "a backend id of 33 characters is an error", modify: func(c *Config) {
			b := stdioBackend()
			b.ID = strings.Repeat("a", 33)
			c.Backends = []Backend{b}
		}, want: []string{"backends[0].id: longer than 32 characters"}},
		{name: "duplicate backend ids are an error", modify: func(c *Config) { c.Backends = []Backend{stdioBackend(), stdioBackend()} },
			want: []string{"backends[1].id: duplicate: also the id of backends[0]"}},
		{name: "a backend transport is required", modify: func(c *Config) { b := stdioBackend(); b.Transport = ""; c.Backends = []Backend{b} },
			want: []string{"backends[0].transport: required"}},
		{name: "an unknown transport is an error", modify: func(c *Config) { b := stdioBackend(); b.Transport = "grpc"; c.Backends = []Backend{b} },
			want: []string{"backends[0].transport: must be stdio, http or sse"}},
		{name: "a stdio backend needs a command and takes no url or headers", modify: func(c *Config) {
			b := stdioBackend()
			b.Command = ""
			b.URL = "https://x.example"
			b.Headers = map[string]string{"X-A": "1"}
			c.Backends = []Backend{b}
		}, want: []string{"backends[0].command: required for transport stdio", "backends[0].url: not allowed for transport stdio", "backends[0].headers: not allowed for transport stdio"}},
		{name: "an http backend needs a url and takes no process settings", modify: func(c *Config) {
			b := httpBackend()
			b.URL = ""
			b.Command, b.Args, b.Cwd = "x", []string{"a"}, "/tmp"
			b.Env, b.EnvPassthrough = map[string]string{"A": "1"}, []string{"B"}
			c.Backends = []Backend{b}
		}, want: []string{"backends[0].url: required for transport http", "backends[0].command: not allowed for transport http",
			"backends[0].args", "backends[0].env:", "backends[0].env_passthrough", "backends[0].cwd"}},
		{name: "a backend url must be http or https", modify: func(c *Config) { b := httpBackend(); b.URL = "ftp://x"; c.Backends = []Backend{b} },
			want: []string{`backends[0].url "ftp://x": scheme must be http or https`}},
		{name: "a backend url without a host is an error", modify: func(c *Config) { b := httpBackend(); b.URL = "https:///mcp"; c.Backends = []Backend{b} },
			want: []string{"backends[0].url: must have a host"}},
		{name: "a backend url with credentials is an error that hides the password", modify: func(c *Config) {
			b := httpBackend()
			b.URL = "https://user:hunter2@x.example/mcp"
			c.Backends = []Backend{b}
		}, want: []string{`backends[0].url "https://user:xxxxx@x.example/mcp": must not contain credentials`}},
		{name: "env names are checked", modify: func(c *Config) {
			b := stdioBackend()
			b.Env = map[string]string{"GOOD_1": "x", "1BAD": "y", "BAD-NAME": "z"}
			b.EnvPassthrough = []string{"OK", "NOT OK", "OK"}
			c.Backends = []Backend{b}
		}, want: []string{`backends[0].env.1BAD: not a valid`, `backends[0].env.BAD-NAME: not a valid`,
			`backends[0].env_passthrough[1] "NOT OK"`, `backends[0].env_passthrough "OK": duplicate entry`}},
		{name: "header names are tokens and gateway-owned headers are refused", modify: func(c *Config) {
			b := httpBackend()
			b.Headers = map[string]string{"Bad Header": "1", "host": "x", "Mcp-Session-Id": "x", "MCP-PROTOCOL-VERSION": "x", "Content-Length": "1", "X-Ok": "1"}
			c.Backends = []Backend{b}
		}, want: []string{`backends[0].headers["Bad Header"]: not a valid header name`,
			"backends[0].headers.host: set by the gateway", "backends[0].headers.Mcp-Session-Id: set by the gateway",
			"backends[0].headers.MCP-PROTOCOL-VERSION: set by the gateway", "backends[0].headers.Content-Length: set by the gateway"}},
		{name: "header names differing only in case are duplicates", modify: func(c *Config) {
			b := httpBackend()
			b.Headers = map[string]string{"X-Key": "1", "x-key": "2"}
			c.Backends = []Backend{b}
		}, want: []string{"backends[0].headers.x-key: duplicate (names are case-insensitive)"}},
		{name: "isolation must be session or shared", modify: func(c *Config) { b := stdioBackend(); b.Isolation = "pooled"; c.Backends = []Backend{b} },
			want: []string{"backends[0].isolation"}},
		{name: "backend timeouts must be positive", modify: func(c *Config) {
			b := stdioBackend()
			b.Timeouts = Timeouts{Startup: -1, Request: 0, Shutdown: -5}
			c.Backends = []Backend{b}
		}, want: []string{"backends[0].timeouts.startup", "backends[0].timeouts.request", "backends[0].timeouts.shutdown"}},
		{name: "labels are checked", modify: func(c *Config) {
			b := stdioBackend()
			b.Labels = map[string]string{"env": "prod", "team/owner": "sec", "bad key": "x", "ok": strings.Repeat("v", 257)}
			c.Backends = []Backend{b}
		}, want: []string{`backends[0].labels["bad key"]`, "backends[0].labels.ok"}},
		{name: "a backend message limit out of range is an error", modify: func(c *Config) {
			b := stdioBackend()
			b.MaxMessageBytes = 2 * GiB
			c.Backends = []Backend{b}
		}, want: []string{"backends[0].max_message_bytes"}},
		{name: "a NUL byte in an argument is an error", modify: func(c *Config) { b := stdioBackend(); b.Args = []string{"a\x00b"}; c.Backends = []Backend{b} },
			want: []string{"backends[0].args[0]: contains a NUL byte"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.modify(c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want %q", tt.want)
			}
			errs := err.(interface{ Unwrap() []error }).Unwrap()
			var got []string
			for _, e := range errs {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *FieldError", e)
				}
				got = append(got, fe.Field+": "+fe.Err.Error())
			}
			// A want matches the error text, values included, or
			// "field: reason" with the value left out.
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) && !strings.Contains(strings.Join(got, "\n"), want) {
					t.Errorf("errors do not include %q:\n%s", want, strings.Join(got, "\n"))
				}
			}
			if len(errs) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
		})
	}
}

func TestValidateNeverShowsSecrets(t *testing.T) {
	c := Default()
	b := httpBackend()
	b.Headers = map[string]string{"Authorization": "Bearer s3cret\r\n", "Host": "s3cret"}
	s := stdioBackend()
	s.Env = map[string]string{"bad name": "s3cret", "TOKEN": "s3cret\x00"}
	c.Backends = []Backend{b, s}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows a secret:\n%v", err)
	}
}

func TestFieldError(t *testing.T) {
	tests := []struct {
		name string
		err  *FieldError
		want string
	}{
		{name: "a value is quoted after the field", err: &FieldError{Field: "backends[2].url", Value: "ftp://x", Err: errors.New("scheme must be http or https")},
			want: `backends[2].url "ftp://x": scheme must be http or https`},
		{name: "no value leaves the quotes out", err: &FieldError{Field: "http.allowed_hosts", Err: errors.New("required when listen is not loopback")},
			want: `http.allowed_hosts: required when listen is not loopback`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			if !errors.Is(tt.err, tt.err.Err) {
				t.Errorf("Unwrap does not reach Err")
			}
		})
	}
}

func TestHostAllowList(t *testing.T) {
	tests := []struct {
		name    string
		listen  string
		allowed []string
		want    []string
	}{
		{name: "a loopback listen allows the loopback names with and without its port", listen: "127.0.0.1:8750",
			want: []string{"localhost", "localhost:8750", "127.0.0.1", "127.0.0.1:8750", "[::1]", "[::1]:8750"}},
		{name: "port 0 leaves the port out", listen: "localhost:0",
			want: []string{"localhost", "127.0.0.1", "[::1]"}},
		{name: "allowed hosts win", listen: "127.0.0.1:8750", allowed: []string{"gw.example.com"},
			want: []string{"gw.example.com"}},
		{name: "a public listen without allowed hosts allows nothing", listen: "0.0.0.0:8750", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Listen, c.HTTP.AllowedHosts = tt.listen, tt.allowed
			if got := c.HostAllowList(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("HostAllowList() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsLoopbackListen(t *testing.T) {
	for _, tt := range []struct {
		listen string
		want   bool
	}{
		{"127.0.0.1:8750", true}, {"127.9.9.9:1", true}, {"localhost:8750", true}, {"LOCALHOST:1", true},
		{"[::1]:8750", true}, {"[::ffff:127.0.0.1]:1", true},
		{":8750", false}, {"0.0.0.0:8750", false}, {"[::]:8750", false}, {"10.0.0.1:80", false},
		{"gw.example.com:443", false}, {"localhost.evil.com:1", false}, {"garbage", false},
	} {
		t.Run(fmt.Sprintf("%s is loopback: %v", tt.listen, tt.want), func(t *testing.T) {
			c := &Config{Listen: tt.listen}
			if got := c.IsLoopbackListen(); got != tt.want {
				t.Errorf("IsLoopbackListen() = %v", got)
			}
		})
	}
}

func TestDemo(t *testing.T) {
	c := Demo("/usr/bin/sallyport", "/tmp/sandbox")
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !c.Auth.Anonymous || c.Listen != DefaultListen || !c.IsLoopbackListen() || c.Path != "" {
		t.Errorf("demo = %+v", c)
	}
	want := Backend{
		ID: "demo", Transport: TransportStdio, Command: "/usr/bin/sallyport",
		Args:             []string{"demo-server", "--sandbox", "/tmp/sandbox"},
		Labels:           map[string]string{"env": "demo"},
		Trusted:          true,
		ReadOnlyTools:    []string{"read_file", "list_files", "lookup_customer", "generate_report"},
		DestructiveTools: []string{"delete_records"},
	}
	want.applyDefaults(DefaultMaxMessageBytes)
	if len(c.Backends) != 1 || !reflect.DeepEqual(c.Backends[0], want) {
		t.Errorf("backends = %+v, want %+v", c.Backends, want)
	}
}

func TestOnlyOneBackendMayBeUnprefixed(t *testing.T) {
	_, err := Parse([]byte(`
backends:
  - {id: a, transport: stdio, command: x, unprefixed: true}
  - {id: b, transport: stdio, command: y, unprefixed: true}
`), "t.yaml")
	if err == nil || !strings.Contains(err.Error(), "backends[1].unprefixed") || !strings.Contains(err.Error(), "backends[0].unprefixed") {
		t.Fatalf("got %v", err)
	}
}

package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testEnv is the environment the parse table sees.
var testEnv = map[string]string{
	"GITHUB_TOKEN": "ghp_SECRETSECRET",
	"EMPTY":        "",
	"DEPTH":        "100",
	"YES":          "true",
	"INJECT":       "x\nlisten: 0.0.0.0:1\n- [a, b]",
	"CRLF":         "Bearer a\r\nX-Evil: 1",
	"LISTEN":       "127.0.0.1:9000",
	"WORD":         "hello",
}

func lookupTestEnv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

const minimalBackend = `
backends:
  - id: demo
    transport: stdio
    command: ./demo
`

// parseCases drive TestParse and seed FuzzParse.
var parseCases = []struct {
	name string
	yaml string
	// errs are substrings that must each appear in the error; none means
	// Parse must succeed.
	errs []string
	// hidden are substrings that must not appear in the error.
	hidden []string
	check  func(t *testing.T, c *Config)
}{
	{
		name: "a minimal config gets every default",
		yaml: "listen: 127.0.0.1:8750\n",
		check: func(t *testing.T, c *Config) {
			want := Default()
			want.Path = "test.yaml"
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got %+v\nwant %+v", c, want)
			}
		},
	},
	{
		name: "a backend gets backend defaults",
		yaml: "limits: {max_message_bytes: 8MiB}\n" + minimalBackend,
		check: func(t *testing.T, c *Config) {
			b := c.Backends[0]
			if b.Isolation != IsolationSession || b.Timeouts.Startup.D() != 30*time.Second ||
				b.Timeouts.Request.D() != time.Minute || b.Timeouts.Shutdown.D() != 5*time.Second {
				t.Errorf("backend defaults = %+v", b)
			}
			if b.MaxMessageBytes != 8*MiB || c.HTTP.MaxBodyBytes != 8*MiB {
				t.Errorf("max_message_bytes = %v, max_body_bytes = %v; want both 8MiB from limits", b.MaxMessageBytes, c.HTTP.MaxBodyBytes)
			}
		},
	},
	{
		name: "sizes and durations accept units and days",
		yaml: "limits: {max_message_bytes: 512KiB}\nhttp: {max_body_bytes: 1048576, session_idle_timeout: 1d, idle_timeout: 1h30m}\n",
		check: func(t *testing.T, c *Config) {
			if c.Limits.MaxMessageBytes != 512*KiB || c.HTTP.MaxBodyBytes != MiB ||
				c.HTTP.SessionIdleTimeout.D() != 24*time.Hour || c.HTTP.IdleTimeout.D() != 90*time.Minute {
				t.Errorf("got %+v %+v", c.Limits, c.HTTP)
			}
		},
	},
	{
		name: "an unknown top-level key is an error with its line and a suggestion",
		yaml: "listen: 127.0.0.1:8750\nlistne: x\n",
		errs: []string{`test.yaml:2: listne: unknown field (did you mean "listen"?)`},
	},
	{
		name: "an unknown key in a backend is an error",
		yaml: minimalBackend + "    comand: x\n",
		errs: []string{`test.yaml:6: backends[0].comand: unknown field (did you mean "command"?)`},
	},
	{
		name: "an unknown key nested in timeouts is an error",
		yaml: minimalBackend + "    timeouts: {startup: 1s, warmup: 2s}\n",
		errs: []string{`backends[0].timeouts.warmup: unknown field`},
	},
	{
		name: "an unknown key with no close match lists the known ones",
		yaml: "log: {colour: red}\n",
		errs: []string{`log.colour: unknown field (known: level, format, file)`},
	},
	{
		name: "a duplicate key is an error",
		yaml: "listen: 127.0.0.1:1\nlisten: 127.0.0.1:2\n",
		errs: []string{`test.yaml:2: listen: duplicate key (first set on line 1)`},
	},
	{
		name: "a duplicate key in a map is an error",
		yaml: minimalBackend + "    env: {A: 1, A: 2}\n",
		errs: []string{`backends[0].env.A: duplicate key`},
	},
	{
		name: "two documents are an error",
		yaml: "listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n",
		errs: []string{`more than one YAML document`},
	},
	{
		name: "an empty file is an error",
		yaml: "",
		errs: []string{`test.yaml: empty configuration`},
	},
	{
		name: "a file of comments is an error",
		yaml: "# nothing here\n",
		errs: []string{`empty configuration`},
	},
	{
		name: "a document of null is an error",
		yaml: "~\n",
		errs: []string{`empty configuration`},
	},
	{
		name: "a top level that is not a mapping is an error",
		yaml: "- listen\n",
		errs: []string{`test.yaml:1: the configuration must be a mapping`},
	},
	{
		name: "a syntax error names file and line",
		yaml: "listen: 127.0.0.1:1\nlog: [\n",
		errs: []string{`test.yaml:`},
	},
	{
		name: "an environment variable expands in a string",
		yaml: "listen: ${LISTEN}\n",
		check: func(t *testing.T, c *Config) {
			if c.Listen != "127.0.0.1:9000" {
				t.Errorf("listen = %q", c.Listen)
			}
		},
	},
	{
		name: "a default applies when the variable is unset or empty",
		yaml: minimalBackend + "    args: ['${NOPE:-a}', '${EMPTY:-b}', '${WORD:-c}', 'x${EMPTY}y']\n",
		check: func(t *testing.T, c *Config) {
			if got := c.Backends[0].Args; !reflect.DeepEqual(got, []string{"a", "b", "hello", "xy"}) {
				t.Errorf("args = %q", got)
			}
		},
	},
	{
		name: "a double dollar is a literal dollar",
		yaml: minimalBackend + "    args: ['$$HOME', 'a$$$$b', '$${WORD}']\n",
		check: func(t *testing.T, c *Config) {
			if got := c.Backends[0].Args; !reflect.DeepEqual(got, []string{"$HOME", "a$$b", "${WORD}"}) {
				t.Errorf("args = %q", got)
			}
		},
	},
	{
		name: "a bare dollar is an error",
		yaml: minimalBackend + "    args: ['$HOME']\n",
		errs: []string{`test.yaml:6: backends[0].args[0] "$HOME": "$" must start ${VAR}`},
	},
	{
		name: "an unterminated reference is an error",
		yaml: minimalBackend + "    args: ['${HOME']\n",
		errs: []string{`backends[0].args[0] "${HOME": unterminated`},
	},
	{
		name: "an invalid variable name is an error",
		yaml: minimalBackend + "    args: ['${1X}']\n",
		errs: []string{`backends[0].args[0] "${1X}": "${" must be followed by a variable name`},
	},
	{
		name:   "an unset variable in a header names the field and the variable, not the value",
		yaml:   "backends:\n  - id: gh\n    transport: http\n    url: https://x.example\n    headers:\n      Authorization: Bearer ${MISSING_TOKEN}\n",
		errs:   []string{`test.yaml:6: backends[0].headers.Authorization: environment variable MISSING_TOKEN is not set`},
		hidden: []string{"Bearer"},
	},
	{
		name: "a header value expands from the environment",
		yaml: "backends:\n  - id: gh\n    transport: http\n    url: https://x.example\n    headers:\n      Authorization: Bearer ${GITHUB_TOKEN}\n",
		check: func(t *testing.T, c *Config) {
			if got := c.Backends[0].Headers["Authorization"]; got != "Bearer ghp_SECRETSECRET" {
				t.Errorf("Authorization = %q", got)
			}
		},
	},
	{
		name:   "a header value with a line break from the environment is refused without showing it",
		yaml:   "backends:\n  - id: gh\n    transport: http\n    url: https://x.example\n    headers:\n      Authorization: ${CRLF}\n",
		errs:   []string{`test.yaml:6: backends[0].headers.Authorization: value contains a control character`},
		hidden: []string{"Bearer", "X-Evil"},
	},
	{
		name: "an environment value cannot inject YAML structure",
		yaml: minimalBackend + "    labels: {note: '${INJECT}'}\n",
		errs: []string{`test.yaml:6: backends[0].labels.note "x\nlisten: 0.0.0.0:1\n- [a, b]": label values are at most 256 bytes of printable text`},
	},
	{
		name: "an environment value stays one argument",
		yaml: minimalBackend + "    args:\n      - ${INJECT}\n",
		check: func(t *testing.T, c *Config) {
			if got := c.Backends[0].Args; len(got) != 1 || got[0] != testEnv["INJECT"] || c.Listen != DefaultListen {
				t.Errorf("args = %q, listen = %q", got, c.Listen)
			}
		},
	},
	{
		name: "keys are not expanded",
		yaml: minimalBackend + "    env: {'${WORD}': x}\n",
		errs: []string{`backends[0].env["${WORD}"]: not a valid environment variable name`},
	},
	{
		name: "an expanded integer and boolean decode as such",
		yaml: "limits: {max_depth: '${DEPTH}'}\nauth:\n  anonymous: ${YES}\nhttp:\n  max_sessions: ${DEPTH}\n",
		check: func(t *testing.T, c *Config) {
			if c.Limits.MaxDepth != 100 || c.HTTP.MaxSessions != 100 || !c.Auth.Anonymous {
				t.Errorf("max_depth = %d, max_sessions = %d, anonymous = %v", c.Limits.MaxDepth, c.HTTP.MaxSessions, c.Auth.Anonymous)
			}
		},
	},
	{
		name: "an expanded empty integer takes the default",
		yaml: "limits: {max_depth: '${EMPTY:-}'}\n",
		check: func(t *testing.T, c *Config) {
			if c.Limits.MaxDepth != DefaultMaxDepth {
				t.Errorf("max_depth = %d", c.Limits.MaxDepth)
			}
		},
	},
	{
		name: "text in an integer field is an error",
		yaml: "limits: {max_depth: deep}\n",
		errs: []string{`test.yaml:1: limits.max_depth "deep": must be an integer`},
	},
	{
		name: "yes is not a boolean",
		yaml: "auth: {anonymous: yes}\n",
		errs: []string{`auth.anonymous "yes": must be true or false`},
	},
	{
		name: "a bad duration names the field",
		yaml: minimalBackend + "    timeouts: {request: 10}\n",
		errs: []string{`test.yaml:6: backends[0].timeouts.request: invalid duration "10"`},
	},
	{
		name: "a bad size names the field",
		yaml: "limits: {max_message_bytes: 4 megabytes}\n",
		errs: []string{`limits.max_message_bytes: invalid size "4 megabytes"`},
	},
	{
		name: "a list where a string belongs is an error",
		yaml: "listen: [a, b]\n",
		errs: []string{`test.yaml:1: listen: must be a single value`},
	},
	{
		name: "a string where a list belongs is an error",
		yaml: minimalBackend + "    args: --verbose\n",
		errs: []string{`backends[0].args: must be a list`},
	},
	{
		name: "a string where a mapping belongs is an error",
		yaml: "log: debug\n",
		errs: []string{`log: must be a mapping`},
	},
	{
		name: "a custom tag is refused",
		yaml: "listen: !env LISTEN\n",
		errs: []string{`listen: tag !env is not supported`},
	},
	{
		name: "a null section takes defaults",
		yaml: "log:\nhttp: ~\nbackends:\n",
		check: func(t *testing.T, c *Config) {
			if c.Log.Level != "info" || c.HTTP.MaxSessions != DefaultMaxSessions || len(c.Backends) != 0 {
				t.Errorf("got %+v", c)
			}
		},
	},
	{
		name: "a merge key shares settings between backends",
		yaml: "backends:\n  - &base\n    id: one\n    transport: stdio\n    command: ./x\n    timeouts: {request: 2m}\n  - <<: *base\n    id: two\n",
		check: func(t *testing.T, c *Config) {
			if len(c.Backends) != 2 || c.Backends[1].ID != "two" || c.Backends[1].Command != "./x" ||
				c.Backends[1].Timeouts.Request.D() != 2*time.Minute {
				t.Errorf("backends = %+v", c.Backends)
			}
		},
	},
	{
		name: "an unknown key reached through a merge is an error",
		yaml: "backends:\n  - id: one\n    transport: stdio\n    command: ./x\n    labels: &l {a: b}\n  - <<: *l\n    id: two\n",
		errs: []string{`backends[1].a: unknown field`},
	},
	{
		name: "a validation error carries the line of its field",
		yaml: "listen: 127.0.0.1:8750\nbackends:\n  - id: web\n    transport: http\n    url: ftp://x\n",
		errs: []string{`test.yaml:5: backends[0].url "ftp://x": scheme must be http or https`},
	},
	{
		name: "a missing field is placed at its parent",
		yaml: "listen: 127.0.0.1:8750\nbackends:\n  - id: web\n    transport: http\n",
		errs: []string{`test.yaml:3: backends[0].url: required for transport http`},
	},
	{
		name: "every problem is reported, not just the first",
		yaml: "listen: nope\nlog: {level: loud, format: xml}\nlimits: {max_depth: 2}\n",
		errs: []string{
			`test.yaml:1: listen "nope": must be host:port`,
			`test.yaml:2: log.level "loud": must be one of debug, info, warn, error`,
			`test.yaml:2: log.format "xml": must be one of text, json`,
			`test.yaml:3: limits.max_depth "2": must be between 8 and 1000`,
		},
	},
	{
		name: "anonymous access on a public listener is refused",
		yaml: "listen: 0.0.0.0:8750\nhttp: {allowed_hosts: [gw.example.com]}\nauth: {anonymous: true}\n",
		errs: []string{`test.yaml:3: auth.anonymous "true": only allowed when listen is a loopback address`},
	},
	{
		name: "a public listener needs allowed hosts",
		yaml: "listen: 0.0.0.0:8750\n",
		errs: []string{`test.yaml: http.allowed_hosts: required when listen is not loopback`},
	},
	{
		name: "a secret env value never shows in an error",
		yaml: minimalBackend + "    env: {TOKEN: [a]}\n",
		errs: []string{`backends[0].env.TOKEN: must be a single value`},
	},
}

func TestParse(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parse([]byte(tt.yaml), "test.yaml", lookupTestEnv)
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("parse succeeded, want errors %q", tt.errs)
			}
			if c != nil {
				t.Errorf("parse returned a config with its error")
			}
			for _, want := range tt.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			for _, secret := range append(tt.hidden, "ghp_SECRETSECRET") {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows %q:\n%v", secret, err)
				}
			}
		})
	}
}

func TestParseErrorsAreFieldErrors(t *testing.T) {
	_, err := parse([]byte("listen: nope\nbackends:\n  - id: x\n    transport: smoke\n"), "test.yaml", lookupTestEnv)
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v holds no *FieldError", err)
	}
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *FieldError", e)
		}
		fields = append(fields, fe.Field)
	}
	if want := []string{"listen", "backends[0].transport"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %q, want %q", fields, want)
	}
}

func TestParseUsesTheEnvironment(t *testing.T) {
	t.Setenv("SALLYPORT_TEST_LISTEN", "127.0.0.1:7000")
	c, err := Parse([]byte("listen: ${SALLYPORT_TEST_LISTEN}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7000" || c.Path != "" {
		t.Errorf("listen = %q, path = %q", c.Listen, c.Path)
	}
	_, err = Parse([]byte("listen: ${SALLYPORT_TEST_UNSET}\n"), "")
	if err == nil || !strings.Contains(err.Error(), "config:1: listen") {
		t.Errorf("error = %v, want one naming config:1", err)
	}
}

func TestLoad(t *testing.T) {
	t.Run("relative paths resolve against the config file's directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "sallyport.yaml")
		write(t, path, "log: {file: logs/gw.log}\n"+minimalBackend+"    cwd: work\n  - id: abs\n    transport: stdio\n    command: x\n    cwd: /srv\n")
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Path != path {
			t.Errorf("Path = %q, want %q", c.Path, path)
		}
		if want := filepath.Join(dir, DefaultDatabase); c.Database != want {
			t.Errorf("database = %q, want %q", c.Database, want)
		}
		if want := filepath.Join(dir, "logs/gw.log"); c.Log.File != want {
			t.Errorf("log.file = %q, want %q", c.Log.File, want)
		}
		if want := filepath.Join(dir, "work"); c.Backends[0].Cwd != want {
			t.Errorf("cwd = %q, want %q", c.Backends[0].Cwd, want)
		}
		if c.Backends[1].Cwd != "/srv" {
			t.Errorf("absolute cwd = %q", c.Backends[1].Cwd)
		}
	})
	t.Run("an empty log file stays stderr", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.yaml")
		write(t, path, "listen: 127.0.0.1:1\n")
		c, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if c.Log.File != "" || c.Backends != nil {
			t.Errorf("log.file = %q", c.Log.File)
		}
	})
	t.Run("a missing file is an error naming it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing.yaml")
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("errors name the file as given", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bad.yaml")
		write(t, path, "listen: 127.0.0.1:1\nbogus: 1\n")
		_, err := Load(path)
		if err == nil || !strings.HasPrefix(err.Error(), path+":2: bogus") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestExampleConfig(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "sallyport.yaml"))
	if err != nil {
		t.Fatalf("examples/sallyport.yaml: %v", err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if len(c.Backends) != 1 {
		t.Fatalf("backends = %+v, want the demo backend only", c.Backends)
	}
	b := c.Backends[0]
	if b.ID != "demo" || b.Command != "./bin/sallyport" ||
		!reflect.DeepEqual(b.Args, []string{"demo-server", "--sandbox", "./examples/demo-sandbox"}) {
		t.Errorf("demo backend = %+v", b)
	}
	// The example spells out every default; apart from the paths Load
	// resolves, it must mean the same as the built-in demo.
	demo := Demo("./bin/sallyport", "./examples/demo-sandbox")
	demo.Path, demo.Database, demo.Backends[0].Env = c.Path, c.Database, b.Env
	demo.HTTP.AllowedOrigins, demo.HTTP.AllowedHosts = c.HTTP.AllowedOrigins, c.HTTP.AllowedHosts
	demo.Stdio.Groups, demo.Backends[0].EnvPassthrough = c.Stdio.Groups, b.EnvPassthrough
	demo.Policy.Paths, demo.DLP.Detectors, demo.Approvals.Webhooks = c.Policy.Paths, c.DLP.Detectors, c.Approvals.Webhooks
	if !reflect.DeepEqual(c, demo) {
		t.Errorf("example = %+v\nwant %+v", c, demo)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

package config

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// claudeServerKeys are the keys a Claude Desktop server entry may have.
var claudeServerKeys = []string{"command", "args", "env", "url", "headers", "type"}

// ImportClaudeDesktop turns the mcpServers of a Claude Desktop
// configuration into backends.
//
// Servers are taken in the order of their names, compared without regard
// to case. A server with a command becomes a stdio backend; one with a url
// becomes an sse backend when its "type" is "sse" and an http backend
// otherwise. Backend ids are derived from the server names: lowercased, every run of
// characters other than a-z and 0-9 replaced by '-', trimmed of '-',
// truncated to 32 characters and made unique with -2, -3 and so on. Keys of
// the configuration other than mcpServers are ignored; unknown keys of a
// server, and servers that would not make a valid backend, are errors.
func ImportClaudeDesktop(data []byte) ([]Backend, error) {
	var top map[string]json.RawMessage
	if err := strictJSON(data, &top); err != nil {
		return nil, fmt.Errorf("import claude desktop config: %w", err)
	}
	raw, ok := top["mcpServers"]
	if !ok {
		return nil, errors.New("import claude desktop config: no mcpServers")
	}
	var servers map[string]json.RawMessage
	if err := strictJSON(raw, &servers); err != nil {
		return nil, fmt.Errorf("import claude desktop config: mcpServers: %w", err)
	}
	names := make([]string, 0, len(servers))
	for name := range servers {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(strings.Compare(strings.ToLower(a), strings.ToLower(b)), strings.Compare(a, b))
	})

	var errs []error
	used := make(map[string]bool, len(names))
	backends := make([]Backend, 0, len(names))
	for _, name := range names {
		path := mapPath("mcpServers", name)
		b, err := claudeBackend(servers[name], path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.ID = uniqueID(deriveID(name), used)
		check := b
		check.applyDefaults(DefaultMaxMessageBytes)
		v := &validator{}
		check.validate(v, path)
		for _, fe := range v.errs {
			errs = append(errs, fe)
		}
		backends = append(backends, b)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("import claude desktop config: %w", errors.Join(errs...))
	}
	return backends, nil
}

// claudeBackend converts one Claude Desktop server entry.
func claudeBackend(raw json.RawMessage, path string) (Backend, error) {
	var server map[string]json.RawMessage
	if err := strictJSON(raw, &server); err != nil {
		return Backend{}, &FieldError{Field: path, Err: err}
	}
	var unknown []string
	for k := range server {
		if !slices.Contains(claudeServerKeys, k) {
			unknown = append(unknown, strconv.Quote(k))
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return Backend{}, &FieldError{Field: path, Err: fmt.Errorf("unknown keys %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(claudeServerKeys, ", "))}
	}
	var (
		b   Backend
		typ string
	)
	for _, f := range []struct {
		key string
		dst any
	}{
		{"command", &b.Command}, {"args", &b.Args}, {"env", &b.Env},
		{"url", &b.URL}, {"headers", &b.Headers}, {"type", &typ},
	} {
		if raw, ok := server[f.key]; ok {
			if err := strictJSON(raw, f.dst); err != nil {
				return Backend{}, &FieldError{Field: path + "." + f.key, Err: err}
			}
		}
	}
	// Empty lists and maps are left out, as a config file would.
	if len(b.Args) == 0 {
		b.Args = nil
	}
	if len(b.Env) == 0 {
		b.Env = nil
	}
	if len(b.Headers) == 0 {
		b.Headers = nil
	}
	switch {
	case b.Command != "" && b.URL != "":
		return Backend{}, &FieldError{Field: path, Err: errors.New("has both command and url")}
	case b.Command != "" && (typ == "" || typ == "stdio"):
		b.Transport = TransportStdio
	case b.URL != "" && typ == "sse":
		b.Transport = TransportSSE
	case b.URL != "" && (typ == "" || typ == "http" || typ == "streamable-http"):
		b.Transport = TransportHTTP
	case b.Command == "" && b.URL == "":
		return Backend{}, &FieldError{Field: path, Err: errors.New("needs a command or a url")}
	default:
		return Backend{}, &FieldError{Field: path + ".type", Value: typ, Err: errors.New("does not fit the server's command or url")}
	}
	return b, nil
}

// strictJSON decodes one JSON value, refusing trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// deriveID makes a backend id from a server name.
func deriveID(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if s := b.String(); s != "" && !strings.HasSuffix(s, "-") {
			b.WriteByte('-')
		}
	}
	id := truncateID(b.String(), maxIDLength)
	if id == "" {
		id = "backend"
	}
	return id
}

// uniqueID returns id, or id-2, id-3 and so on, whichever is first unused,
// and marks it used.
func uniqueID(id string, used map[string]bool) string {
	candidate := id
	for n := 2; used[candidate]; n++ {
		suffix := "-" + strconv.Itoa(n)
		candidate = truncateID(id, maxIDLength-len(suffix)) + suffix
	}
	used[candidate] = true
	return candidate
}

func truncateID(id string, n int) string {
	if len(id) > n {
		id = id[:n]
	}
	return strings.Trim(id, "-")
}

// backendYAML is Backend as MarshalBackends writes it: zero values left out.
type backendYAML struct {
	ID               string            `yaml:"id,omitempty"`
	Transport        string            `yaml:"transport,omitempty"`
	Command          string            `yaml:"command,omitempty"`
	Args             []string          `yaml:"args,omitempty"`
	Env              map[string]string `yaml:"env,omitempty"`
	EnvPassthrough   []string          `yaml:"env_passthrough,omitempty"`
	Cwd              string            `yaml:"cwd,omitempty"`
	URL              string            `yaml:"url,omitempty"`
	Headers          map[string]string `yaml:"headers,omitempty"`
	Isolation        string            `yaml:"isolation,omitempty"`
	Timeouts         *timeoutsYAML     `yaml:"timeouts,omitempty"`
	Labels           map[string]string `yaml:"labels,omitempty"`
	Trusted          bool              `yaml:"trusted,omitempty"`
	ReadOnlyTools    []string          `yaml:"read_only_tools,omitempty"`
	DestructiveTools []string          `yaml:"destructive_tools,omitempty"`
	MaxMessageBytes  ByteSize          `yaml:"max_message_bytes,omitempty"`
	Unprefixed       bool              `yaml:"unprefixed,omitempty"`
}

type timeoutsYAML struct {
	Startup  Duration `yaml:"startup,omitempty"`
	Request  Duration `yaml:"request,omitempty"`
	Shutdown Duration `yaml:"shutdown,omitempty"`
}

// MarshalBackends writes bs as a YAML document with one key, backends,
// leaving out fields with zero values, so that it can be pasted into a
// configuration. Every "$" in a value is written as "$$", so that Parse
// reads back exactly the values given.
func MarshalBackends(bs []Backend) ([]byte, error) {
	out := struct {
		Backends []backendYAML `yaml:"backends"`
	}{Backends: make([]backendYAML, 0, len(bs))}
	for _, b := range bs {
		y := backendYAML{
			ID:               escapeDollars(b.ID),
			Transport:        escapeDollars(b.Transport),
			Command:          escapeDollars(b.Command),
			Args:             escapeAll(b.Args),
			Env:              escapeValues(b.Env),
			EnvPassthrough:   escapeAll(b.EnvPassthrough),
			Cwd:              escapeDollars(b.Cwd),
			URL:              escapeDollars(b.URL),
			Headers:          escapeValues(b.Headers),
			Isolation:        escapeDollars(b.Isolation),
			Labels:           escapeValues(b.Labels),
			MaxMessageBytes:  b.MaxMessageBytes,
			Unprefixed:       b.Unprefixed,
			Trusted:          b.Trusted,
			ReadOnlyTools:    escapeAll(b.ReadOnlyTools),
			DestructiveTools: escapeAll(b.DestructiveTools),
		}
		if b.Timeouts != (Timeouts{}) {
			y.Timeouts = &timeoutsYAML{Startup: b.Timeouts.Startup, Request: b.Timeouts.Request, Shutdown: b.Timeouts.Shutdown}
		}
		out.Backends = append(out.Backends, y)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(out); err != nil {
		return nil, fmt.Errorf("marshal backends: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal backends: %w", err)
	}
	return buf.Bytes(), nil
}

func escapeAll(list []string) []string {
	if list == nil {
		return nil
	}
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = escapeDollars(s)
	}
	return out
}

func escapeValues(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = escapeDollars(v)
	}
	return out
}

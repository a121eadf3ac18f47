// Package policy evaluates Rego policy on every message that passes the
// gateway, with OPA embedded (github.com/open-policy-agent/opa/v1/rego).
//
// A Set is one compiled policy: .rego files and data files, compiled and
// prepared once, evaluated many times. The Stage holds the current Set
// behind an atomic pointer; a changed set of files is compiled and
// validated in full and swapped in only when that succeeds. Every failure
// (a policy that does not load, an evaluation error, a panic, a result of
// the wrong shape, an evaluation past its deadline) is a denial with the
// reason: the stage fails closed.
//
// The input document and the decision document are described in
// README.md beside this file.
package policy

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// DefaultQuery is the decision evaluated when none is configured.
const DefaultQuery = "data.sallyport.decision"

// DefaultSource names the embedded default policy in Set.Source.
const DefaultSource = "embedded default policy"

//go:embed default/*.rego
var defaultFS embed.FS

// defaultDir is the embedded default policy's directory in defaultFS.
const defaultDir = "default"

// forbidden are the built-ins removed from the capabilities policies are
// compiled with, and why.
var forbidden = map[string]string{
	"http.send":          "policies cannot reach the network",
	"net.lookup_ip_addr": "policies cannot reach the network",
	"opa.runtime":        "it exposes the gateway's environment",
}

// capabilities are OPA's capabilities for this version less the forbidden
// built-ins, with no host allowed for network access.
var capabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return forbidden[b.Name] != "" })
	c.AllowNet = []string{}
	return c
}()

// Source says where a Set comes from.
type Source struct {
	// Paths are .rego files, data files (.json, .yaml, .yml) and
	// directories of them, read recursively; names starting with "." are
	// skipped. Empty means the embedded default policy.
	Paths []string
	// Query is the decision's reference; default DefaultQuery.
	Query string
}

func (s Source) query() string {
	if s.Query == "" {
		return DefaultQuery
	}
	return s.Query
}

// String describes the source for logs and status.
func (s Source) String() string {
	if len(s.Paths) == 0 {
		return DefaultSource
	}
	return strings.Join(s.Paths, ", ")
}

// Set is one compiled policy set.
type Set struct {
	query   rego.PreparedEvalQuery
	version string
	source  string
	files   []string
}

// Version is the hash of the set's files: the policy version recorded in
// every audit row.
func (s *Set) Version() string { return s.version }

// Source describes where the set was loaded from.
func (s *Set) Source() string { return s.source }

// Files are the policy and data files the set was loaded from, sorted.
func (s *Set) Files() []string { return s.files }

// LoadError is a policy that failed to load or compile. Its message names
// the file and line of each problem.
type LoadError struct {
	Source string
	Err    error
}

func (e *LoadError) Error() string { return "policy " + e.Source + ": " + e.Err.Error() }

func (e *LoadError) Unwrap() error { return e.Err }

// Load reads, compiles and prepares the policy set src names. It fails
// with a *LoadError when a file cannot be read or parsed, when the set
// does not compile, or when it uses a forbidden built-in.
func Load(ctx context.Context, src Source) (*Set, error) {
	res, files, err := loadFiles(src, false)
	if err != nil {
		return nil, &LoadError{Source: src.String(), Err: err}
	}
	s, err := compile(ctx, src, res)
	if err != nil {
		return nil, &LoadError{Source: src.String(), Err: err}
	}
	s.files = files
	return s, nil
}

// loadFiles reads src's files; withTests keeps the _test.rego files. It
// returns the files read, sorted.
func loadFiles(src Source, withTests bool) (*loader.Result, []string, error) {
	l := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).WithCapabilities(capabilities)
	paths := src.Paths
	if len(paths) == 0 {
		l = l.WithFS(defaultFS)
		paths = []string{defaultDir}
	} else {
		for _, p := range paths {
			if strings.Contains(p, ":") {
				// The loader would read "a.b:/path" as a data prefix.
				return nil, nil, fmt.Errorf("path %q: a policy path must not contain ':'", p)
			}
		}
	}
	var files []string
	filter := fileFilter(withTests)
	res, err := l.Filtered(paths, func(abspath string, info fs.FileInfo, depth int) bool {
		skip := filter(abspath, info, depth)
		if !skip && !info.IsDir() {
			files = append(files, abspath)
		}
		return skip
	})
	if err != nil {
		return nil, nil, explain(err)
	}
	if len(res.Modules) == 0 {
		return nil, nil, errors.New("no .rego files found")
	}
	sort.Strings(files)
	return res, slices.Compact(files), nil
}

// fileFilter skips hidden files and directories, files that are neither
// policy nor data, and (unless withTests) Rego test files.
func fileFilter(withTests bool) loader.Filter {
	return func(abspath string, info fs.FileInfo, depth int) bool {
		name := info.Name()
		if depth > 0 && strings.HasPrefix(name, ".") {
			return true
		}
		if info.IsDir() {
			return false
		}
		switch filepath.Ext(name) {
		case ".rego":
			return !withTests && strings.HasSuffix(name, "_test.rego")
		case ".json", ".yaml", ".yml":
			return false
		}
		return true
	}
}

// compile prepares the query over the loaded modules and data.
func compile(ctx context.Context, src Source, res *loader.Result) (*Set, error) {
	q := src.query()
	if _, err := ast.ParseRef(q); err != nil || !strings.HasPrefix(q, "data.") {
		return nil, fmt.Errorf("query %q is not a data reference", q)
	}
	store := inmem.NewFromObject(res.Documents)
	opts := []func(*rego.Rego){
		rego.Query(q),
		rego.Store(store),
		rego.Capabilities(capabilities),
		rego.StrictBuiltinErrors(true),
		rego.SetRegoVersion(ast.RegoV1),
	}
	names := make([]string, 0, len(res.Modules))
	for name := range res.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		opts = append(opts, rego.ParsedModule(res.Modules[name].Parsed))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, explain(err)
	}
	if !defines(res.Modules, q) {
		return nil, fmt.Errorf("no rule defines %s", q)
	}
	version, err := hashSet(res, names)
	if err != nil {
		return nil, err
	}
	return &Set{query: pq, version: version, source: src.String()}, nil
}

// defines reports whether some module has a rule whose path is q, or a
// package at or below q.
func defines(mods map[string]*loader.RegoFile, q string) bool {
	for _, m := range mods {
		pkg := m.Parsed.Package.Path.String()
		if pkg == q || strings.HasPrefix(pkg, q+".") {
			return true
		}
		for _, r := range m.Parsed.Rules {
			if pkg+"."+r.Head.Ref().String() == q || strings.HasPrefix(q, pkg+"."+r.Head.Ref().String()+".") {
				return true
			}
		}
	}
	return false
}

// hashSet returns the version of a loaded set: the SHA-256 of its modules'
// names and bytes and of its data as canonical JSON.
func hashSet(res *loader.Result, names []string) (string, error) {
	h := sha256.New()
	for _, name := range names {
		fmt.Fprintf(h, "module %d %s\n", len(name), name)
		raw := res.Modules[name].Raw
		fmt.Fprintf(h, "%d\n", len(raw))
		h.Write(raw)
	}
	data, err := json.Marshal(res.Documents) // map keys sorted
	if err != nil {
		return "", fmt.Errorf("encode data: %w", err)
	}
	fmt.Fprintf(h, "data %d\n", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// explain adds the reason to errors about the forbidden built-ins, which
// OPA reports as undefined functions.
func explain(err error) error {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return err
	}
	for _, e := range errs {
		for name, why := range forbidden {
			if strings.Contains(e.Message, "undefined function "+name) {
				e.Message = fmt.Sprintf("%s is not available: %s", name, why)
			}
		}
	}
	return errs
}

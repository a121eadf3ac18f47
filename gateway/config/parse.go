package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the configuration file at path with Parse, records its
// absolute path in Config.Path and resolves the relative paths in it
// (Database, Auth.TokensFile, Log.File, Policy.Paths, Backend.Cwd) against the file's
// directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	c.Path = abs
	dir := filepath.Dir(abs)
	for _, p := range []*string{&c.Database, &c.Auth.TokensFile, &c.Log.File, &c.DLP.HashKeyFile} {
		resolvePath(p, dir)
	}
	for i := range c.Policy.Paths {
		resolvePath(&c.Policy.Paths[i], dir)
	}
	for i := range c.Backends {
		resolvePath(&c.Backends[i].Cwd, dir)
	}
	return c, nil
}

func resolvePath(p *string, dir string) {
	if *p != "" && !filepath.IsAbs(*p) {
		*p = filepath.Join(dir, *p)
	}
}

// Parse reads a configuration from data; path names it in errors and is
// recorded in Config.Path. Parse decodes strictly, expands environment
// references, fills in defaults and validates; it returns every problem
// found, each naming path, the line where YAML gives one, and the field.
//
// In every string value (not in keys), ${VAR} is replaced by the
// environment variable VAR, which must be set; ${VAR:-default} uses default
// when VAR is unset or empty; $$ is a literal $. Any other $ is an error.
// Expansion happens on the YAML node tree, so a variable's value is always
// one scalar and can never add YAML structure.
func Parse(data []byte, path string) (*Config, error) {
	return parse(data, path, os.LookupEnv)
}

func parse(data []byte, path string, lookup func(string) (string, bool)) (*Config, error) {
	name := path
	if name == "" {
		name = "config"
	}
	root, err := parseDocument(data, name)
	if err != nil {
		return nil, err
	}
	w := &walker{
		file:     name,
		lookup:   lookup,
		lines:    make(map[string]int),
		seen:     make(map[seenKey]bool),
		expanded: make(map[*yaml.Node]bool),
	}
	w.walk(root, configType, "", false)
	if len(w.errs) > 0 {
		return nil, errors.Join(w.errs...)
	}
	c := &Config{}
	if err := root.Decode(c); err != nil {
		return nil, w.decodeError(err)
	}
	c.Path = path
	c.applyDefaults()
	if fes := c.validate(); len(fes) > 0 {
		errs := make([]error, len(fes))
		for i, fe := range fes {
			errs[i] = &posError{file: name, line: w.lineOf(fe.Field), err: fe}
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// posError places an error in the configuration file.
type posError struct {
	file string
	line int // 0 when unknown
	err  error
}

func (e *posError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.file, e.line, e.err)
	}
	return fmt.Sprintf("%s: %v", e.file, e.err)
}

func (e *posError) Unwrap() error { return e.err }

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError places an error from the YAML package in the file, taking the
// line from its message where it has one.
func yamlError(file string, err error) error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &posError{file: file, line: line, err: errors.New(m[2])}
	}
	return &posError{file: file, err: errors.New(strings.TrimPrefix(msg, "yaml: "))}
}

// parseDocument parses data as exactly one YAML document whose root is a
// mapping, and returns that mapping.
func parseDocument(data []byte, file string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &posError{file: file, err: errors.New("empty configuration")}
		}
		return nil, yamlError(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlError(file, err)
	default:
		return nil, &posError{file: file, line: next.Line, err: errors.New("more than one YAML document; a configuration is one document")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &posError{file: file, err: errors.New("empty configuration")}
	}
	root := doc.Content[0]
	if isNull(root) {
		return nil, &posError{file: file, line: root.Line, err: errors.New("empty configuration")}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &posError{file: file, line: root.Line, err: errors.New("the configuration must be a mapping of keys to values")}
	}
	return root, nil
}

var (
	configType   = reflect.TypeFor[Config]()
	backendType  = reflect.TypeFor[Backend]()
	webhookType  = reflect.TypeFor[Webhook]()
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// walker checks the YAML node tree against the Config type before it is
// decoded: unknown keys at any level, duplicate keys, node kinds, explicit
// tags, duration and size syntax. It does for the node tree what yaml's
// Decoder.KnownFields(true) does for a byte stream (Node.Decode has no such
// option, and expansion must happen on nodes) and names the field path
// besides; FuzzParse checks that it is never less strict. It expands
// environment references in string values as it goes, and records the line
// of every field it sees, so that validation errors can point at the file.
type walker struct {
	file     string
	lookup   func(string) (string, bool)
	errs     []error
	lines    map[string]int
	seen     map[seenKey]bool
	expanded map[*yaml.Node]bool
}

// seenKey marks a node already checked against a type: a node reached
// again through an alias or merge is not walked twice.
type seenKey struct {
	n *yaml.Node
	t reflect.Type
}

func (w *walker) fail(n *yaml.Node, field, value string, err error) {
	w.errs = append(w.errs, &posError{file: w.file, line: n.Line, err: &FieldError{Field: field, Value: value, Err: err}})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string, secret bool) {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		n = n.Alias
	}
	if w.seen[seenKey{n, t}] {
		return
	}
	w.seen[seenKey{n, t}] = true
	w.setLine(path, n.Line)
	if !w.checkTag(n, path) || isNull(n) {
		return
	}
	switch {
	case t == durationType || t == byteSizeType:
		s, ok := w.scalar(n, path, secret, false)
		if !ok {
			return
		}
		var err error
		if t == durationType {
			_, err = ParseDuration(s)
		} else {
			_, err = ParseByteSize(s)
		}
		if err != nil {
			w.fail(n, path, "", err)
		}
	case t.Kind() == reflect.String:
		w.scalar(n, path, secret, false)
	case t.Kind() == reflect.Int:
		if s, ok := w.scalar(n, path, secret, true); ok && !isNull(n) && n.ShortTag() != "!!int" {
			w.fail(n, path, s, errors.New("must be an integer"))
		}
	case t.Kind() == reflect.Bool:
		if s, ok := w.scalar(n, path, secret, true); ok && !isNull(n) && n.ShortTag() != "!!bool" {
			w.fail(n, path, s, errors.New("must be true or false"))
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "", errors.New("must be a list"))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), secret)
		}
	case t.Kind() == reflect.Map:
		w.mapping(n, t, path, secret, func(key string, kn, vn *yaml.Node) {
			p := mapPath(path, key)
			w.setLine(p, kn.Line)
			w.walk(vn, t.Elem(), p, secret)
		})
	case t.Kind() == reflect.Struct:
		fields, names := structFields(t)
		w.mapping(n, t, path, secret, func(key string, kn, vn *yaml.Node) {
			p := mapPath(path, key)
			f, ok := fields[key]
			if !ok {
				w.fail(kn, p, "", unknownField(key, names))
				return
			}
			w.setLine(p, kn.Line)
			w.walk(vn, f.Type, p, t == backendType && (key == "env" || key == "headers") || t == webhookType && key == "headers")
		})
	default:
		panic(fmt.Sprintf("config: no YAML check for %v", t))
	}
}

// mapping checks a mapping node's keys, calls each for every key set
// explicitly and then walks the mappings merged in with "<<".
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string, secret bool, each func(key string, kn, vn *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		w.fail(n, path, "", errors.New("must be a mapping"))
		return
	}
	firstLine := make(map[string]int)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.AliasNode && kn.Alias != nil {
			kn = kn.Alias
		}
		switch {
		case kn.Kind != yaml.ScalarNode:
			w.fail(kn, path, "", errors.New("keys must be strings"))
		case kn.Value == "<<" && kn.ShortTag() == "!!merge":
			merges = append(merges, vn)
		case firstLine[kn.Value] != 0:
			w.fail(kn, mapPath(path, kn.Value), "", fmt.Errorf("duplicate key (first set on line %d)", firstLine[kn.Value]))
		default:
			firstLine[kn.Value] = kn.Line
			each(kn.Value, kn, vn)
		}
	}
	for _, m := range merges {
		if m.Kind == yaml.AliasNode && m.Alias != nil {
			m = m.Alias
		}
		if m.Kind == yaml.SequenceNode {
			for _, e := range m.Content {
				w.walk(e, t, path, secret)
			}
		} else {
			w.walk(m, t, path, secret)
		}
	}
}

// scalar expands the environment references in a scalar node and returns
// its value. When retag is set, a scalar changed by expansion and not
// explicitly tagged has its tag resolved again, quoted or not, so that
// "${DEPTH}" can become an integer.
func (w *walker) scalar(n *yaml.Node, path string, secret, retag bool) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		w.fail(n, path, "", errors.New("must be a single value, not a list or mapping"))
		return "", false
	}
	if w.expanded[n] {
		return n.Value, true
	}
	w.expanded[n] = true
	v, err := expand(n.Value, w.lookup)
	if err != nil {
		shown := n.Value
		if secret {
			shown = ""
		}
		w.fail(n, path, shown, err)
		return "", false
	}
	if v != n.Value {
		n.Value = v
		if retag && n.Style&yaml.TaggedStyle == 0 {
			n.Tag, n.Style = "", 0
		}
	}
	return v, true
}

// checkTag refuses explicit tags other than YAML's core ones.
func (w *walker) checkTag(n *yaml.Node, path string) bool {
	if n.Style&yaml.TaggedStyle == 0 {
		return true
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!bool", "!!null", "!!float", "!!map", "!!seq":
		return true
	}
	w.fail(n, path, "", fmt.Errorf("tag %s is not supported", n.Tag))
	return false
}

// setLine records the line of field where it is first seen: a key set
// explicitly comes before the same key merged in.
func (w *walker) setLine(field string, line int) {
	if _, ok := w.lines[field]; !ok {
		w.lines[field] = line
	}
}

// lineOf returns the line of field, or of its nearest parent present in
// the file, or 0.
func (w *walker) lineOf(field string) int {
	for field != "" {
		if line, ok := w.lines[field]; ok {
			return line
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

// decodeError places the errors of yaml's Node.Decode in the file.
func (w *walker) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return yamlError(w.file, err)
	}
	errs := make([]error, len(te.Errors))
	for i, msg := range te.Errors {
		errs[i] = yamlError(w.file, errors.New(msg))
	}
	return errors.Join(errs...)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// structFields maps the YAML keys of struct type t to its fields, and
// lists the keys in field order.
func structFields(t reflect.Type) (map[string]reflect.StructField, []string) {
	fields := make(map[string]reflect.StructField, t.NumField())
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f
		names = append(names, name)
	}
	return fields, names
}

// unknownField explains an unknown key, suggesting the closest known one.
func unknownField(key string, known []string) error {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown field (did you mean %q?)", best)
	}
	return fmt.Errorf("unknown field (known: %s)", strings.Join(known, ", "))
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unsetVarError reports a ${VAR} reference to an unset environment
// variable.
type unsetVarError struct{ Name string }

func (e *unsetVarError) Error() string {
	return fmt.Sprintf("environment variable %s is not set", e.Name)
}

// expand replaces ${VAR} and ${VAR:-default} with values from lookup and
// $$ with $. Any other $ is an error, so that a mistyped reference is not
// taken literally.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		j := strings.IndexByte(s[i:], '$')
		if j < 0 {
			b.WriteString(s[i:])
			break
		}
		b.WriteString(s[i : i+j])
		i += j
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			b.WriteByte('$')
			i += 2
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", errors.New(`unterminated "${"`)
			}
			ref := s[i+2 : i+end]
			name, def, hasDef := strings.Cut(ref, ":-")
			if !envNameRE.MatchString(name) {
				return "", errors.New(`"${" must be followed by a variable name, as in ${NAME} or ${NAME:-default}`)
			}
			if strings.Contains(def, "$") {
				return "", fmt.Errorf("the default of ${%s:-...} must not contain \"$\"", name)
			}
			v, ok := lookup(name)
			switch {
			case hasDef && v == "":
				v = def
			case !ok && !hasDef:
				return "", &unsetVarError{Name: name}
			}
			b.WriteString(v)
			i += end + 1
		default:
			return "", errors.New(`"$" must start ${VAR}, ${VAR:-default} or $$ (a literal "$")`)
		}
	}
	return b.String(), nil
}

// escapeDollars makes s survive expand unchanged.
func escapeDollars(s string) string { return strings.ReplaceAll(s, "$", "$$") }

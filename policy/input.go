package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// InputVersion is the version of the input document, input.version. It
// changes only when a change could break a policy written for an earlier
// version; new fields do not change it.
const InputVersion = 1

// Inputs builds input documents from exchanges, with what the
// configuration says about each backend. Documents are built as OPA values
// directly from the message's JSON, without a detour through Go maps.
type Inputs struct {
	backends     map[string]*config.Backend
	backendTerms map[string]*ast.Term // built once: the configuration does not change

	// Terms that stay the same for a session, and for a tool definition,
	// are built once and shared (OPA never changes its input). The caches
	// start over when they grow past maxCached.
	mu       sync.Mutex
	sessions map[sessionKey][2]*ast.Term // principal, session
	tools    map[toolKey]*ast.Term
}

type sessionKey struct {
	p *gateway.Principal
	s *gateway.SessionInfo
}

type toolKey struct {
	name, backend, backendName string
	def                        *byte // the definition's bytes, as the backend's catalog holds them
	n                          int
}

const maxCached = 4096

// NewInputs returns a builder for the given backends.
func NewInputs(backends []config.Backend) *Inputs {
	in := &Inputs{backends: make(map[string]*config.Backend, len(backends)), backendTerms: map[string]*ast.Term{},
		sessions: map[sessionKey][2]*ast.Term{}, tools: map[toolKey]*ast.Term{}}
	for i := range backends {
		in.backends[backends[i].ID] = &backends[i]
	}
	for id := range in.backends {
		in.backendTerms[id] = in.newBackend(id)
	}
	return in
}

var (
	keyVersion   = ast.StringTerm("version")
	keyDirection = ast.StringTerm("direction")
	keyKind      = ast.StringTerm("kind")
	keyMethod    = ast.StringTerm("method")
	keyFindings  = ast.StringTerm("findings")
	keyTime      = ast.StringTerm("time")
	keyPrincipal = ast.StringTerm("principal")
	keySession   = ast.StringTerm("session")
	keyBackend   = ast.StringTerm("backend")
	keyTool      = ast.StringTerm("tool")
	keyPrompt    = ast.StringTerm("prompt")
	keyResource  = ast.StringTerm("resource")
	keyParams    = ast.StringTerm("params")
	keyArguments = ast.StringTerm("arguments")
	keyResult    = ast.StringTerm("result")
	keyError     = ast.StringTerm("error")
	keyListing   = ast.StringTerm("listing")
	keyName      = ast.StringTerm("name")
)

// Build returns the input document for x.
func (in *Inputs) Build(x *gateway.Exchange) (ast.Object, error) {
	doc := in.base(x.Direction, x.Kind, x.Method, x, x.Findings)
	req := x
	if x.Kind == gateway.KindResult && x.Request != nil {
		req = x.Request
	}
	var params ast.Value
	if m := x.Message; m != nil && len(m.Params) > 0 {
		v, err := valueOf(m.Params)
		if err != nil {
			return nil, fmt.Errorf("params: %w", err)
		}
		doc.Insert(keyParams, ast.NewTerm(v))
		params = v
	}
	if x.Backend != "" {
		doc.Insert(keyBackend, in.backend(x.Backend))
	}
	switch x.Method {
	case "tools/call", "prompts/get":
		name := ""
		if req.Message != nil {
			raw, _ := jsonrpc.Member(req.Message.Params, "name")
			name, _ = jsonrpc.Unquote(raw)
		}
		if x.Method == "tools/call" {
			doc.Insert(keyTool, in.tool(name, x.Backend, req.Target, req.Definition))
		} else {
			doc.Insert(keyPrompt, prompt(name, req.Target, req.Definition))
		}
		if x.Kind == gateway.KindRequest {
			if obj, ok := params.(ast.Object); ok {
				if args := obj.Get(keyArguments); args != nil {
					doc.Insert(keyArguments, args)
				}
			}
		}
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		if req.Target != "" {
			doc.Insert(keyResource, ast.ObjectTerm(ast.Item(ast.StringTerm("uri"), ast.StringTerm(req.Target))))
		}
	}
	if x.Kind == gateway.KindResult && x.Message != nil {
		if len(x.Message.Result) > 0 {
			v, err := valueOf(x.Message.Result)
			if err != nil {
				return nil, fmt.Errorf("result: %w", err)
			}
			doc.Insert(keyResult, ast.NewTerm(v))
		}
		if e := x.Message.Error; e != nil {
			ev := ast.NewObject(
				ast.Item(ast.StringTerm("code"), ast.NumberTerm(json.Number(strconv.Itoa(e.Code)))),
				ast.Item(ast.StringTerm("message"), ast.StringTerm(e.Message)))
			if len(e.Data) > 0 {
				if d, err := valueOf(e.Data); err == nil {
					ev.Insert(ast.StringTerm("data"), ast.NewTerm(d))
				}
			}
			doc.Insert(keyError, ast.NewTerm(ev))
		}
	}
	return doc, nil
}

// aggregatedLists describes the lists the gateway aggregates: the member
// holding the entries in the result, and the call each entry stands for.
var aggregatedLists = map[string]struct{ member, call string }{
	"tools/list":               {"tools", "tools/call"},
	"prompts/list":             {"prompts", "prompts/get"},
	"resources/list":           {"resources", "resources/read"},
	"resources/templates/list": {"resourceTemplates", "resources/read"},
}

// Listing returns the input for deciding whether entry, listed by the
// backend origin names, is shown to x's principal: the input of a call to
// it (tools/call, prompts/get, resources/read) with input.listing true,
// and no arguments.
func (in *Inputs) Listing(x *gateway.Exchange, list string, origin gateway.ListedEntry, entry json.RawMessage) ast.Object {
	// A call without arguments: no findings (the list's own findings are
	// about the list, not about a call to one entry).
	doc := in.base(gateway.ClientToBackend, gateway.KindRequest, aggregatedLists[list].call, x, nil)
	doc.Insert(keyListing, ast.InternedTerm(true))
	doc.Insert(keyBackend, in.backend(origin.Backend))
	rawName, _ := jsonrpc.Member(entry, "name")
	name, _ := jsonrpc.Unquote(rawName)
	switch list {
	case "tools/list":
		doc.Insert(keyTool, in.tool(name, origin.Backend, origin.Name, origin.Definition))
	case "prompts/list":
		doc.Insert(keyPrompt, prompt(name, origin.Name, origin.Definition))
	case "resources/list":
		doc.Insert(keyResource, ast.ObjectTerm(ast.Item(ast.StringTerm("uri"), ast.StringTerm(origin.Name))))
	default:
		doc.Insert(keyResource, ast.ObjectTerm(ast.Item(ast.StringTerm("uri_template"), ast.StringTerm(origin.Name))))
	}
	return doc
}

// base returns the members every input has.
func (in *Inputs) base(dir gateway.Direction, kind gateway.Kind, method string, x *gateway.Exchange, findings []gateway.Finding) ast.Object {
	t := x.Time
	if t.IsZero() {
		t = time.Now()
	}
	doc := ast.NewObjectWithCapacity(12)
	doc.Insert(keyVersion, ast.InternedTerm(InputVersion))
	doc.Insert(keyDirection, ast.StringTerm(dir.String()))
	doc.Insert(keyKind, ast.StringTerm(kind.String()))
	doc.Insert(keyMethod, ast.StringTerm(method))
	doc.Insert(keyFindings, findingsTerm(findings))
	doc.Insert(keyTime, ast.StringTerm(t.UTC().Format(time.RFC3339Nano)))
	ps := in.principalSession(x)
	doc.Insert(keyPrincipal, ps[0])
	doc.Insert(keySession, ps[1])
	return doc
}

// principalSession returns the principal and session members of x's
// input, cached per session.
func (in *Inputs) principalSession(x *gateway.Exchange) [2]*ast.Term {
	k := sessionKey{x.Principal, x.Session}
	if k.p != nil && k.s != nil {
		in.mu.Lock()
		ps, ok := in.sessions[k]
		in.mu.Unlock()
		if ok {
			return ps
		}
	}
	var p gateway.Principal
	if x.Principal != nil {
		p = *x.Principal
	} else {
		p.Anonymous = true
	}
	groups := make([]*ast.Term, len(p.Groups))
	for i, g := range p.Groups {
		groups[i] = ast.StringTerm(g)
	}
	var ps [2]*ast.Term
	ps[0] = ast.ObjectTerm(
		ast.Item(ast.StringTerm("id"), ast.StringTerm(p.ID)),
		ast.Item(ast.StringTerm("groups"), ast.ArrayTerm(groups...)),
		ast.Item(ast.StringTerm("token_id"), ast.StringTerm(p.TokenID)),
		ast.Item(ast.StringTerm("anonymous"), ast.InternedTerm(p.Anonymous)))
	var s gateway.SessionInfo
	if x.Session != nil {
		s = *x.Session
	}
	ps[1] = ast.ObjectTerm(
		ast.Item(ast.StringTerm("id"), ast.StringTerm(s.ID)),
		ast.Item(ast.StringTerm("transport"), ast.StringTerm(s.Transport)),
		ast.Item(ast.StringTerm("protocol_version"), ast.StringTerm(s.ProtocolVersion)),
		ast.Item(ast.StringTerm("client"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("name"), ast.StringTerm(s.ClientName)),
			ast.Item(ast.StringTerm("version"), ast.StringTerm(s.ClientVersion)))))
	if k.p != nil && k.s != nil {
		in.mu.Lock()
		if len(in.sessions) >= maxCached {
			clear(in.sessions)
		}
		in.sessions[k] = ps
		in.mu.Unlock()
	}
	return ps
}

func (in *Inputs) backend(id string) *ast.Term {
	if t := in.backendTerms[id]; t != nil {
		return t
	}
	return in.newBackend(id)
}

func (in *Inputs) newBackend(id string) *ast.Term {
	transport, trusted := "", false
	labels := ast.NewObject()
	if c := in.backends[id]; c != nil {
		transport, trusted = c.Transport, c.Trusted
		for k, v := range c.Labels {
			labels.Insert(ast.StringTerm(k), ast.StringTerm(v))
		}
	}
	return ast.ObjectTerm(
		ast.Item(ast.StringTerm("id"), ast.StringTerm(id)),
		ast.Item(ast.StringTerm("transport"), ast.StringTerm(transport)),
		ast.Item(ast.StringTerm("labels"), ast.NewTerm(labels)),
		ast.Item(ast.StringTerm("trusted"), ast.InternedTerm(trusted)))
}

// tool describes a tool: its public and backend names, the annotations
// and title of its definition, the definition's hash, and what the
// configuration (never the backend) says of it.
func (in *Inputs) tool(name, backend, backendName string, def json.RawMessage) *ast.Term {
	k := toolKey{name: name, backend: backend, backendName: backendName, n: len(def)}
	if len(def) > 0 {
		k.def = &def[0]
	}
	in.mu.Lock()
	t, ok := in.tools[k]
	in.mu.Unlock()
	if ok {
		return t
	}
	t = in.newTool(name, backend, backendName, def)
	in.mu.Lock()
	if len(in.tools) >= maxCached {
		clear(in.tools)
	}
	in.tools[k] = t
	in.mu.Unlock()
	return t
}

func (in *Inputs) newTool(name, backend, backendName string, def json.RawMessage) *ast.Term {
	readOnly, destructive := false, false
	if c := in.backends[backend]; c != nil {
		readOnly, destructive = matchAny(c.ReadOnlyTools, backendName), matchAny(c.DestructiveTools, backendName)
	}
	annotations := ast.NewTerm(ast.NewObject())
	title, hash := "", ""
	if len(def) > 0 {
		hash = definitionHash(def)
		if raw, ok := jsonrpc.Member(def, "annotations"); ok {
			if v, err := valueOf(raw); err == nil {
				if _, isObj := v.(ast.Object); isObj {
					annotations = ast.NewTerm(v)
				}
			}
		}
		if raw, ok := jsonrpc.Member(def, "title"); ok {
			title, _ = jsonrpc.Unquote(raw)
		}
	}
	return ast.ObjectTerm(
		ast.Item(keyName, ast.StringTerm(name)),
		ast.Item(ast.StringTerm("backend_name"), ast.StringTerm(backendName)),
		ast.Item(ast.StringTerm("title"), ast.StringTerm(title)),
		ast.Item(ast.StringTerm("annotations"), annotations),
		ast.Item(ast.StringTerm("definition_hash"), ast.StringTerm(hash)),
		ast.Item(ast.StringTerm("read_only"), ast.InternedTerm(readOnly)),
		ast.Item(ast.StringTerm("destructive"), ast.InternedTerm(destructive)))
}

func prompt(name, backendName string, def json.RawMessage) *ast.Term {
	hash := ""
	if len(def) > 0 {
		hash = definitionHash(def)
	}
	return ast.ObjectTerm(
		ast.Item(keyName, ast.StringTerm(name)),
		ast.Item(ast.StringTerm("backend_name"), ast.StringTerm(backendName)),
		ast.Item(ast.StringTerm("definition_hash"), ast.StringTerm(hash)))
}

// definitionHash is the hex SHA-256 of a definition's canonical JSON.
func definitionHash(def json.RawMessage) string {
	c, err := jsonrpc.Canonical(def)
	if err != nil {
		c = def
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:])
}

func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Recorded returns the input as the audit log keeps it for replay: JSON,
// without the arguments, the result and, for tools/call and prompts/get,
// the params (the arguments column holds what replay needs of those).
func Recorded(doc ast.Object) []byte {
	skipParams := false
	if m, ok := doc.Get(keyMethod).Value.(ast.String); ok && (m == "tools/call" || m == "prompts/get") {
		skipParams = true
	}
	b := make([]byte, 0, 512)
	b = append(b, '{')
	first := true
	for _, k := range doc.Keys() {
		if k.Equal(keyArguments) || k.Equal(keyResult) || skipParams && k.Equal(keyParams) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSON(b, k.Value)
		b = append(b, ':')
		b = appendJSON(b, doc.Get(k).Value)
	}
	return append(b, '}')
}

// DecodeInput reads an input document from JSON (a file given to `policy
// eval`, say), numbers kept exact.
func DecodeInput(data []byte) (ast.Value, error) {
	if !json.Valid(data) {
		return nil, errors.New("not valid JSON")
	}
	return valueOf(data)
}

var (
	keyDetector   = ast.StringTerm("detector")
	keyCategory   = ast.StringTerm("category")
	keyPath       = ast.StringTerm("path")
	keyInKey      = ast.StringTerm("in_key")
	keyOffset     = ast.StringTerm("offset")
	keyLength     = ast.StringTerm("length")
	keyConfidence = ast.StringTerm("confidence")
	keyEncoding   = ast.StringTerm("encoding")
	keyAction     = ast.StringTerm("action")
)

// findingsTerm is input.findings: one object per DLP finding.
func findingsTerm(fs []gateway.Finding) *ast.Term {
	if len(fs) == 0 {
		return ast.ArrayTerm()
	}
	terms := make([]*ast.Term, len(fs))
	for i, f := range fs {
		terms[i] = ast.ObjectTerm(
			ast.Item(keyDetector, ast.StringTerm(f.Detector)),
			ast.Item(keyCategory, ast.StringTerm(f.Category)),
			ast.Item(keyPath, ast.StringTerm(f.Path)),
			ast.Item(keyInKey, ast.BooleanTerm(f.InKey)),
			ast.Item(keyOffset, ast.IntNumberTerm(f.Offset)),
			ast.Item(keyLength, ast.IntNumberTerm(f.Length)),
			ast.Item(keyConfidence, ast.FloatNumberTerm(f.Confidence)),
			ast.Item(keyEncoding, ast.StringTerm(f.Encoding)),
			ast.Item(keyAction, ast.StringTerm(f.Action)),
		)
	}
	return ast.ArrayTerm(terms...)
}

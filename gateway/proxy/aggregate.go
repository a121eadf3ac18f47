package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/backend"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// listMembers names the result member of each aggregated list.
var listMembers = map[string]string{
	"tools": "tools", "prompts": "prompts", "resources": "resources", "templates": "resourceTemplates",
}

// aggregate answers tools/list, prompts/list, resources/list or
// resources/templates/list with every backend's list. Tool and prompt
// names are namespaced; everything else is byte for byte as the backend
// sent it. A backend that is down is left out and named in the result's
// _meta; it does not fail the list. Tools that can only run as tasks are
// left out: the gateway does not relay tasks.
func (s *Session) aggregate(kind string) routeFunc {
	member := listMembers[kind]
	rename := kind == "tools" || kind == "prompts"
	return func(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
		offset := 0
		if raw, ok := jsonrpc.Member(x.Message.Params, "cursor"); ok && string(raw) != "null" {
			cur, _ := jsonrpc.Unquote(raw)
			var err error
			if offset, err = s.g.cursors.open(cur, s.ID(), kind); err != nil {
				return nil, gateway.Errorf(gateway.CodeInvalidParams, "invalid cursor")
			}
		}
		ctx, cancel := context.WithTimeout(ctx, s.g.requestTimeout())
		defer cancel()
		ids := s.visibleBackends()
		lists := make([][]backend.Entry, len(ids))
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() { lists[i], errs[i] = s.leg(id).List(ctx, kind) })
		}
		wg.Wait()

		var entries []json.RawMessage
		var origins []gateway.ListedEntry
		version := s.ProtocolVersion()
		for i, id := range ids {
			for _, e := range lists[i] {
				if kind == "tools" && taskOnly(e.Raw) {
					continue
				}
				raw := e.Raw
				if rename {
					public, ok := s.g.publicName(id, e.Name)
					if !ok {
						s.log.Warn("unprefixed name that looks namespaced for another backend left out", slog.String("backend", id), slog.String("name", e.Name))
						continue
					}
					if public != e.Name {
						raw = jsonrpc.SetMember(raw, "name", jsonrpc.Quote(public))
					}
				}
				entries = append(entries, adaptEntry(raw, version))
				origins = append(origins, gateway.ListedEntry{Backend: id, Name: e.Name, Definition: e.Raw})
			}
		}
		if offset > len(entries) {
			offset = len(entries)
		}
		end := min(offset+s.g.pageSize, len(entries))

		x.Listed = origins[offset:end]
		var b bytes.Buffer
		b.WriteString(`{"` + member + `":[`)
		for i, raw := range entries[offset:end] {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(raw)
		}
		b.WriteByte(']')
		if end < len(entries) {
			b.WriteString(`,"nextCursor":` + string(jsonrpc.Quote(s.g.cursors.issue(s.ID(), kind, end))))
		}
		var down []string
		for i, err := range errs {
			if err != nil {
				s.log.Warn("backend left out of "+x.Method, slog.String("backend", ids[i]), slog.String("err", err.Error()))
				down = append(down, `{"backend":`+string(jsonrpc.Quote(ids[i]))+`,"error":`+string(jsonrpc.Quote(gateway.RPCError(err).Message))+`}`)
			}
		}
		if len(down) > 0 {
			b.WriteString(`,"_meta":{"io.sallyport/unavailable":[` + joinRaw(down) + `]}`)
		}
		b.WriteByte('}')
		return &jsonrpc.Message{Result: b.Bytes()}, nil
	}
}

// taskOnly reports whether a tool definition says it can only run as a
// task (execution.taskSupport "required").
func taskOnly(tool json.RawMessage) bool {
	exec, _ := jsonrpc.Member(tool, "execution")
	ts, _ := jsonrpc.Member(exec, "taskSupport")
	return string(ts) == `"required"`
}

func joinRaw(parts []string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p)
	}
	return b.String()
}

// initialize answers the client's initialize itself: it negotiates the
// version, and advertises the union of what the backends offer.
func (s *Session) initialize(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
	// Read with the strict codec's helpers, not encoding/json, which
	// matches keys case-insensitively: what the gateway acts on is what
	// the stages saw.
	params := x.Message.Params
	rawVersion, _ := jsonrpc.Member(params, "protocolVersion")
	requested, okVersion := jsonrpc.Unquote(rawVersion)
	clientCaps, okCaps := jsonrpc.Member(params, "capabilities")
	clientInfo, _ := jsonrpc.Member(params, "clientInfo")
	rawName, _ := jsonrpc.Member(clientInfo, "name")
	rawClientVersion, _ := jsonrpc.Member(clientInfo, "version")
	clientName, okName := jsonrpc.Unquote(rawName)
	clientVersion, _ := jsonrpc.Unquote(rawClientVersion)
	if !okVersion || requested == "" || !okCaps || len(clientCaps) == 0 || clientCaps[0] != '{' || !okName {
		return nil, gateway.Errorf(gateway.CodeInvalidParams, "initialize needs params.protocolVersion, params.capabilities and params.clientInfo")
	}
	version := ClientVersions[0]
	if slices.Contains(ClientVersions, requested) {
		version = requested
	}
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return nil, gateway.Errorf(gateway.CodeInvalidRequest, "session is already initialized")
	}
	// Known before any leg starts: legs offer backends what the client offers.
	s.clientCaps = clientCaps
	s.mu.Unlock()

	// Learn the capabilities of backends no session has started yet.
	ctx, cancel := context.WithTimeout(ctx, s.g.requestTimeout())
	defer cancel()
	var wg sync.WaitGroup
	for _, id := range s.visibleBackends() {
		if _, ok := s.g.knownCaps(id); !ok {
			wg.Go(func() {
				if err := s.leg(id).Ensure(ctx); err != nil {
					s.log.Warn("backend unavailable at initialize", slog.String("backend", id), slog.String("err", err.Error()))
				}
			})
		}
	}
	wg.Wait()

	var tools, prompts, resources, subscribe, completions, logging bool
	var instructions bytes.Buffer
	for _, id := range s.visibleBackends() {
		// The leg this session just started knows best; the gateway's
		// record (filled asynchronously) covers legs not started here.
		init, ok := s.g.knownCaps(id)
		if l := s.leg(id); l != nil {
			if st, _ := l.Status(); st == backend.StateReady {
				init, ok = l.Init(), true
			}
		}
		if !ok {
			continue
		}
		has := func(c string) bool { _, ok := jsonrpc.Member(init.Capabilities, c); return ok }
		tools, prompts, completions, logging = tools || has("tools"), prompts || has("prompts"), completions || has("completions"), logging || has("logging")
		if res, ok := jsonrpc.Member(init.Capabilities, "resources"); ok {
			resources = true
			sub, _ := jsonrpc.Member(res, "subscribe")
			subscribe = subscribe || string(sub) == "true"
		}
		if init.Instructions != "" {
			if instructions.Len() > 0 {
				instructions.WriteString("\n\n")
			}
			instructions.WriteString("[" + id + "] " + init.Instructions)
		}
	}
	var caps []string
	if tools || !(prompts || resources) {
		caps = append(caps, `"tools":{"listChanged":true}`)
	}
	if prompts {
		caps = append(caps, `"prompts":{"listChanged":true}`)
	}
	if resources {
		caps = append(caps, `"resources":{"subscribe":`+strconv.FormatBool(subscribe)+`,"listChanged":true}`)
	}
	if completions {
		caps = append(caps, `"completions":{}`)
	}
	if logging {
		caps = append(caps, `"logging":{}`)
	}
	capsJSON := "{" + strings.Join(caps, ",") + "}"
	result := `{"protocolVersion":` + string(jsonrpc.Quote(version)) +
		`,"capabilities":` + capsJSON +
		`,"serverInfo":{"name":"sallyport","title":"Sallyport MCP gateway","version":` + string(jsonrpc.Quote(s.g.version)) + `}`
	if instructions.Len() > 0 {
		result += `,"instructions":` + string(jsonrpc.Quote(instructions.String()))
	}
	result += `}`

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return nil, gateway.Errorf(gateway.CodeInvalidRequest, "session is already initialized")
	}
	s.state = stateInitialized
	info := *s.info.Load()
	info.ProtocolVersion = version
	info.ClientName, info.ClientVersion = clientName, clientVersion
	s.info.Store(&info)
	return &jsonrpc.Message{Result: json.RawMessage(result)}, nil
}

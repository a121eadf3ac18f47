package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// maxListPages bounds how many pages of one list the gateway follows.
const maxListPages = 100

// maxKeyLen bounds a resource URI or URI template the gateway accepts.
const maxKeyLen = 4096

func (k listKind) capability() string {
	switch k.method {
	case "tools/list":
		return "tools"
	case "prompts/list":
		return "prompts"
	}
	return "resources"
}

// Offers reports whether the running backend announced a capability
// ("tools", "prompts", "resources", "logging", "completions").
func (l *Leg) Offers(capability string) bool {
	_, ok := jsonrpc.Member(l.Init().Capabilities, capability)
	return ok
}

// validName is what the gateway accepts as a backend tool or prompt name
// (the MCP tool-name rules: 1-128 of [A-Za-z0-9_.-]).
var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Entry is one tool or prompt as the backend defines it.
type Entry struct {
	Name string
	// Raw is the backend's definition, byte for byte.
	Raw json.RawMessage
}

// catalog caches one of a leg's lists (tools or prompts). A list_changed
// notification or a restart invalidates it.
type catalog struct {
	mu       sync.Mutex
	epoch    int // bumped on invalidation, so a fetch that raced one is not kept
	valid    bool
	entries  []Entry
	byName   map[string]int
	fetching chan struct{} // closed when the fetch in flight ends; nil when none
}

func (c *catalog) invalidate() {
	c.mu.Lock()
	c.epoch++
	c.valid = false
	c.entries, c.byName = nil, nil
	c.mu.Unlock()
}

// listKind says how to list one kind of catalog.
type listKind struct {
	method string // list method
	member string // result member holding the entries
	key    string // entry member that names it
	mcp    bool   // the key must be a valid MCP tool/prompt name
}

// listKinds are the catalogs a leg can cache.
var listKinds = map[string]listKind{
	"tools":     {"tools/list", "tools", "name", true},
	"prompts":   {"prompts/list", "prompts", "name", true},
	"resources": {"resources/list", "resources", "uri", false},
	"templates": {"resources/templates/list", "resourceTemplates", "uriTemplate", false},
}

func (l *Leg) catalog(kind string) *catalog {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.catalogs[kind]
	if c == nil {
		c = &catalog{}
		l.catalogs[kind] = c
	}
	return c
}

func (l *Leg) invalidate(kind string) { l.catalog(kind).invalidate() }

// List returns one of the backend's lists ("tools", "prompts",
// "resources", "templates"), following every page, from cache when it is
// still valid. Entries whose name (or URI, or URI template) is missing or
// invalid are left out and logged.
func (l *Leg) List(ctx context.Context, kind string) ([]Entry, error) {
	c := l.catalog(kind)
	c.mu.Lock()
	for !c.valid && c.fetching != nil {
		// One fetch at a time: wait for the one in flight and use it.
		ch := c.fetching
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	if c.valid {
		e := c.entries
		c.mu.Unlock()
		return e, nil
	}
	epoch := c.epoch
	done := make(chan struct{})
	c.fetching = done
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.fetching == done {
			c.fetching = nil
		}
		c.mu.Unlock()
		close(done)
	}()

	k, ok := listKinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown list %q", kind)
	}
	if err := l.Ensure(ctx); err != nil {
		return nil, err
	}
	if !l.Offers(k.capability()) {
		// A backend that does not offer the feature has an empty list.
		c.mu.Lock()
		if c.epoch == epoch {
			c.valid, c.entries, c.byName = true, nil, map[string]int{}
		}
		c.mu.Unlock()
		return nil, nil
	}
	var entries []Entry
	byName := map[string]int{}
	var cursor json.RawMessage
	for page := 0; ; page++ {
		if page == maxListPages {
			return nil, fmt.Errorf("%s: more than %d pages", k.method, maxListPages)
		}
		var params json.RawMessage
		if cursor != nil {
			params = jsonrpc.SetMember(nil, "cursor", cursor)
		}
		resp, err := l.Call(ctx, k.method, params, nil)
		if err != nil {
			return nil, err
		}
		if resp.Error != nil {
			return nil, fmt.Errorf("%s: backend answered error %d: %s", k.method, resp.Error.Code, resp.Error.Message)
		}
		arr, _ := jsonrpc.Member(resp.Result, k.member)
		err = jsonrpc.EachElement(arr, func(_ int, v json.RawMessage) bool {
			rawName, _ := jsonrpc.Member(v, k.key)
			name, ok := jsonrpc.Unquote(rawName)
			if !ok || name == "" || (k.mcp && !validName.MatchString(name)) || len(name) > maxKeyLen {
				l.log.Warn("backend list entry with an invalid name left out", "list", kind, "name", string(rawName))
				return true
			}
			if _, dup := byName[name]; dup {
				l.log.Warn("backend list entry with a duplicate name left out", "list", kind, "name", name)
				return true
			}
			byName[name] = len(entries)
			entries = append(entries, Entry{Name: name, Raw: v})
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("%s: malformed result: %w", k.method, err)
		}
		next, ok := jsonrpc.Member(resp.Result, "nextCursor")
		if !ok || string(next) == "null" {
			break
		}
		if _, isStr := jsonrpc.Unquote(next); !isStr {
			return nil, fmt.Errorf("%s: nextCursor is not a string", k.method)
		}
		cursor = next
	}
	c.mu.Lock()
	if c.epoch == epoch {
		c.valid, c.entries, c.byName = true, entries, byName
	}
	c.mu.Unlock()
	return entries, nil
}

// Cached looks a tool or prompt up in the cached catalog only; cached is
// false when the catalog must be listed first (see Lookup).
func (l *Leg) Cached(kind, name string) (e Entry, found, cached bool) {
	c := l.catalog(kind)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid {
		return Entry{}, false, false
	}
	i, ok := c.byName[name]
	if !ok {
		return Entry{}, false, true
	}
	return c.entries[i], true, true
}

// Lookup returns the definition of one tool or prompt by its backend name,
// listing the backend first if the catalog is not cached.
func (l *Leg) Lookup(ctx context.Context, kind, name string) (Entry, bool, error) {
	if e, found, cached := l.Cached(kind, name); cached {
		return e, found, nil
	}
	entries, err := l.List(ctx, kind)
	if err != nil {
		return Entry{}, false, err
	}
	for _, e := range entries {
		if e.Name == name {
			return e, true, nil
		}
	}
	return Entry{}, false, nil
}

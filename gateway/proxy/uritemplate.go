package proxy

import (
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// templateCache holds compiled URI template matchers.
var (
	templateCache sync.Map // template string → *regexp.Regexp (nil: unusable)
	templateCount atomic.Int64
)

// maxCachedTemplates bounds templateCache.
const maxCachedTemplates = 10000

// matchTemplate reports whether uri is an expansion of the RFC 6570 URI
// template tmpl. Literal parts must match exactly; each expression matches
// what its operator can produce.
func matchTemplate(tmpl, uri string) bool {
	v, ok := templateCache.Load(tmpl)
	if !ok {
		// The templates come from backends: the cache is bounded, and past
		// the bound a template is compiled for each use.
		re := compileTemplate(tmpl)
		if templateCount.Load() < maxCachedTemplates {
			if _, loaded := templateCache.LoadOrStore(tmpl, re); !loaded {
				templateCount.Add(1)
			}
		}
		v = re
	}
	re, _ := v.(*regexp.Regexp)
	return re != nil && re.MatchString(uri)
}

func compileTemplate(tmpl string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for tmpl != "" {
		open := strings.IndexByte(tmpl, '{')
		if open < 0 {
			b.WriteString(regexp.QuoteMeta(tmpl))
			break
		}
		b.WriteString(regexp.QuoteMeta(tmpl[:open]))
		end := strings.IndexByte(tmpl[open:], '}')
		if end < 0 {
			return nil
		}
		expr := tmpl[open+1 : open+end]
		tmpl = tmpl[open+end+1:]
		if expr == "" {
			return nil
		}
		switch expr[0] {
		case '+', '#':
			b.WriteString(`.*`)
		case '?', '&':
			b.WriteString(`(?:[?&][^#]*)?`)
		case '/':
			b.WriteString(`(?:/[^/?#]*)*`)
		case '.':
			b.WriteString(`(?:\.[^/?#.]*)*`)
		case ';':
			b.WriteString(`(?:;[^/?#]*)*`)
		default:
			b.WriteString(`[^/?#]*`)
		}
	}
	b.WriteString("$")
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil
	}
	return re
}

package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// gen writes random JSON text, mostly valid, with random whitespace,
// escapes, non-ASCII text, number forms and (on purpose) colliding member
// names.
type gen struct {
	r *rand.Rand
	b []byte
}

var (
	genWS    = []string{"", "", "", " ", "\n", "\t", "\r\n", "  "}
	genNames = []string{`"a"`, `"b"`, `"\u0061"`, `"c"`, `"é"`, `"\u00e9"`, `"$schema"`, `"_meta"`, `"\/"`, `"/"`, `""`}
	genNums  = []string{"0", "-0", "1", "-1", "42", "1.5", "-0.0", "1e5", "1E+2", "2e-3", "123456789012345678901234567890", "0.000001"}
	genStrs  = []string{`""`, `"x"`, `"hello world"`, `"\n\t\"\\"`, `"\u0000"`, `"\ud83d\ude00"`, `"😀"`, `"é"`, `"\u2028"`, `"\/"`, `"\b\f\r"`, `"ünïcödé ✓"`}
)

func (g *gen) ws() { g.b = append(g.b, genWS[g.r.IntN(len(genWS))]...) }

func (g *gen) value(depth int) {
	k := g.r.IntN(10)
	if depth > 6 {
		k = g.r.IntN(5)
	}
	switch k {
	case 0:
		g.b = append(g.b, genNums[g.r.IntN(len(genNums))]...)
	case 1:
		g.b = append(g.b, genStrs[g.r.IntN(len(genStrs))]...)
	case 2:
		g.b = append(g.b, []string{"true", "false", "null"}[g.r.IntN(3)]...)
	case 3:
		g.b = strconv.AppendInt(g.b, g.r.Int64N(1<<40)-1<<39, 10)
	case 4:
		g.b = append(g.b, Quote(randString(g.r))...)
	case 5, 6, 7:
		g.b = append(g.b, '{')
		n := g.r.IntN(5)
		if g.r.IntN(20) == 0 {
			n = 20 + g.r.IntN(10) // past the small-object threshold
		}
		for i := range n {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.ws()
			if g.r.IntN(3) == 0 {
				g.b = append(g.b, genNames[g.r.IntN(len(genNames))]...)
			} else {
				g.b = append(g.b, '"', 'k')
				g.b = strconv.AppendInt(g.b, int64(g.r.IntN(40)), 10)
				g.b = append(g.b, '"')
			}
			g.ws()
			g.b = append(g.b, ':')
			g.ws()
			g.value(depth + 1)
			g.ws()
		}
		g.b = append(g.b, '}')
	default:
		g.b = append(g.b, '[')
		n := g.r.IntN(5)
		for i := range n {
			if i > 0 {
				g.b = append(g.b, ',')
			}
			g.ws()
			g.value(depth + 1)
			g.ws()
		}
		g.b = append(g.b, ']')
	}
}

func randString(r *rand.Rand) string {
	runes := []rune{'a', 'Z', ' ', '"', '\\', '/', '\n', 0, 0x1f, 0x7f, 'é', '😀', 0x2028, 0xfffd, '{', '}', '[', ']', ':', ','}
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteRune(runes[r.IntN(len(runes))])
	}
	return b.String()
}

// mutate applies a few random byte edits drawn from JSON-significant bytes.
func mutate(r *rand.Rand, b []byte) []byte {
	const alphabet = "{}[],:\"\\ \t\n0123456789-+.eEtrufalsn/u\x00\x1f\x7f\xc3\xa9\xff"
	b = bytes.Clone(b)
	for range 1 + r.IntN(3) {
		c := alphabet[r.IntN(len(alphabet))]
		switch op := r.IntN(3); {
		case len(b) == 0 || op == 0:
			i := r.IntN(len(b) + 1)
			b = append(b[:i], append([]byte{c}, b[i:]...)...)
		case op == 1:
			i := r.IntN(len(b))
			b = append(b[:i], b[i+1:]...)
		default:
			b[r.IntN(len(b))] = c
		}
	}
	return b
}

// stdDuplicate reports whether valid JSON data has a duplicate member name
// in some object, as encoding/json reads the names.
func stdDuplicate(data []byte) bool {
	type frame struct {
		obj     bool
		wantKey bool
		names   map[string]bool
	}
	var st []frame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			panic(err)
		}
		top := len(st) - 1
		if top >= 0 && st[top].obj && st[top].wantKey {
			if tok == json.Delim('}') {
				st = st[:top]
				continue
			}
			name := tok.(string)
			if st[top].names[name] {
				return true
			}
			st[top].names[name] = true
			st[top].wantKey = false
			continue
		}
		if top >= 0 && st[top].obj {
			st[top].wantKey = true // this token is the member's value
		}
		switch tok {
		case json.Delim('{'):
			st = append(st, frame{obj: true, wantKey: true, names: map[string]bool{}})
		case json.Delim('['):
			st = append(st, frame{})
		case json.Delim(']'):
			st = st[:top]
			if top > 0 && st[top-1].obj {
				st[top-1].wantKey = true
			}
		}
	}
}

// hasSurrogateEscape reports whether data contains a \uD800-\uDFFF escape,
// where encoding/json silently substitutes U+FFFD for unpaired ones and so
// cannot serve as the oracle.
func hasSurrogateEscape(data []byte) bool {
	for i := 0; i+2 < len(data); i++ {
		if data[i] == '\\' && data[i+1] == 'u' && data[i+2]|0x20 == 'd' {
			return true
		}
	}
	return false
}

// TestDifferential checks Valid against encoding/json on a generated
// corpus of valid and mutated JSON: where encoding/json can be the oracle
// (valid UTF-8, no surrogate escapes), Valid must accept exactly the inputs
// encoding/json accepts without duplicate names, and report a parse error
// for the ones encoding/json refuses.
func TestDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(20240601, 7))
	n := 30000
	if testing.Short() {
		n = 3000
	}
	var stats struct{ valid, dup, syntax, badUTF8, skipped int }
	for i := range n {
		g := gen{r: r}
		g.ws()
		g.value(0)
		g.ws()
		in := g.b
		if i%2 == 1 {
			in = mutate(r, in)
		}
		err := Valid(in, Limits{})
		var de *DecodeError
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("Valid(%q) returned %T", in, err)
		}
		stdOK := json.Valid(in)
		if err == nil && !stdOK {
			t.Fatalf("Valid accepts %q, encoding/json refuses it", in)
		}
		switch {
		case !utf8.Valid(in):
			stats.badUTF8++
			if err == nil || de.Code != CodeParseError {
				t.Fatalf("Valid(%q) = %v, want a parse error for invalid UTF-8", in, err)
			}
		case hasSurrogateEscape(in):
			stats.skipped++
		case !stdOK:
			stats.syntax++
			if err == nil || de.Code != CodeParseError {
				t.Fatalf("Valid(%q) = %v, want a parse error (encoding/json refuses it)", in, err)
			}
		case stdDuplicate(in):
			stats.dup++
			if err == nil || de.Code != CodeInvalidRequest || !strings.Contains(de.Message, "duplicate member") {
				t.Fatalf("Valid(%q) = %v, want a duplicate member error", in, err)
			}
		default:
			stats.valid++
			if err != nil {
				t.Fatalf("Valid(%q) = %v, encoding/json accepts it without duplicates", in, err)
			}
		}
	}
	t.Logf("corpus: %+v", stats)
	if stats.valid < n/10 || stats.dup < n/100 || stats.syntax < n/10 {
		t.Errorf("corpus is unbalanced: %+v", stats)
	}
}

// TestSpecialMask checks the word-at-a-time string scan against a plain
// byte loop: the mask is zero exactly when no byte needs attention, and its
// lowest flagged byte is the first one that does.
func TestSpecialMask(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	interesting := []byte{0, 0x1f, 0x20, 0x21, '"', '#', '[', '\\', ']', 0x7f, 0x80, 0xff, 'a'}
	for range 200000 {
		var w [8]byte
		for i := range w {
			if r.IntN(2) == 0 {
				w[i] = interesting[r.IntN(len(interesting))]
			} else {
				w[i] = byte(r.IntN(256))
			}
		}
		first := -1
		for i, c := range w {
			if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
				first = i
				break
			}
		}
		var x uint64
		for i := 7; i >= 0; i-- {
			x = x<<8 | uint64(w[i])
		}
		m := special(x)
		if (m == 0) != (first < 0) || m != 0 && bits.TrailingZeros64(m)>>3 != first {
			t.Fatalf("special(% x) = %x, first special byte at %d", w, m, first)
		}
	}
}

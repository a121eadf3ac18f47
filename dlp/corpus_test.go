package dlp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// The labelled corpus lives in testdata/corpus/*.jsonl, one sample a line:
//
//	{"id":"pii-email-003","context":"json","text":"...","expect":[{"detector":"EMAIL_ADDRESS","value":"..."}],"note":"..."}
//
// expect lists every finding the text must produce: the detector id and a
// substring of text the finding must overlap (for an encoded finding, the
// encoded run, with "encoding" naming its layers, e.g. "base64" or
// "base64+url"). An empty expect is a hard negative: nothing may be found.

// corpusDetectors is the list of detector ids of the contract.
var corpusDetectors = []string{
	"EMAIL_ADDRESS",
	"PHONE_NUMBER",
	"CREDIT_CARD",
	"US_SSN",
	"IBAN_CODE",
	"IP_ADDRESS",
	"US_BANK_NUMBER",
	"aws-access-token",
	"aws-secret-access-key",
	"github-pat",
	"github-oauth",
	"github-app-token",
	"github-refresh-token",
	"github-fine-grained-pat",
	"gitlab-pat",
	"slack-bot-token",
	"slack-user-token",
	"slack-legacy-token",
	"slack-webhook-url",
	"stripe-access-token",
	"gcp-api-key",
	"openai-api-key",
	"anthropic-api-key",
	"npm-access-token",
	"private-key",
	"jwt",
	"database-url-password",
	"generic-api-key",
}

var corpusContexts = map[string]bool{
	"json": true, "log": true, "prose": true, "code": true, "config": true, "markdown": true,
}

var corpusEncodings = map[string]bool{"base64": true, "hex": true, "url": true}

const (
	corpusMinPositives     = 15   // per detector
	corpusMinContexts      = 3    // per detector
	corpusMinEncoded       = 25   // encoded positives in all
	corpusMinNegatives     = 250  // hard-negative samples
	corpusMinPrecision     = 0.98 // per detector and overall
	corpusMinRecall        = 0.98 // per detector and overall
	corpusMaxShownSpanSize = 160
)

var corpusOnly = flag.String("corpus.only", "", "run only the corpus samples whose id matches this regexp, log their matches, assert no thresholds")

type corpusExpect struct {
	Detector *string `json:"detector"`
	Value    *string `json:"value"`
	Encoding string  `json:"encoding,omitempty"`
}

type corpusLine struct {
	ID      *string         `json:"id"`
	Context *string         `json:"context"`
	Text    *string         `json:"text"`
	Expect  *[]corpusExpect `json:"expect"`
	Note    string          `json:"note,omitempty"`
}

type corpusItem struct {
	detector string
	value    string
	encoding string
	spans    [][2]int // every occurrence of value in text
}

type corpusSample struct {
	id, context, text, where string
	expect                   []corpusItem
}

// corpusLoad reads and validates every corpus file; any defect is fatal.
func corpusLoad(t *testing.T) []corpusSample {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no corpus files in testdata/corpus")
	}
	known := make(map[string]bool, len(corpusDetectors))
	for _, d := range corpusDetectors {
		known[d] = true
	}
	ids := map[string]string{}
	var out []corpusSample
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		n := 0
		for sc.Scan() {
			n++
			where := fmt.Sprintf("%s:%d", filepath.Base(file), n)
			s, err := corpusParseLine(sc.Bytes(), known)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if prev, dup := ids[s.id]; dup {
				t.Fatalf("%s: duplicate id %q (first at %s)", where, s.id, prev)
			}
			ids[s.id] = where
			s.where = where
			out = append(out, s)
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		f.Close()
	}
	return out
}

func corpusParseLine(line []byte, known map[string]bool) (corpusSample, error) {
	var l corpusLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return corpusSample{}, fmt.Errorf("malformed line: %v", err)
	}
	if dec.More() {
		return corpusSample{}, fmt.Errorf("malformed line: data after the object")
	}
	switch {
	case l.ID == nil || *l.ID == "":
		return corpusSample{}, fmt.Errorf("missing id")
	case l.Context == nil:
		return corpusSample{}, fmt.Errorf("%s: missing context", *l.ID)
	case l.Text == nil || *l.Text == "":
		return corpusSample{}, fmt.Errorf("%s: missing text", *l.ID)
	case l.Expect == nil:
		return corpusSample{}, fmt.Errorf("%s: missing expect (use [] for a hard negative)", *l.ID)
	}
	if !corpusContexts[*l.Context] {
		return corpusSample{}, fmt.Errorf("%s: unknown context %q", *l.ID, *l.Context)
	}
	s := corpusSample{id: *l.ID, context: *l.Context, text: *l.Text}
	seen := map[[2]string]bool{}
	for i, e := range *l.Expect {
		switch {
		case e.Detector == nil || *e.Detector == "":
			return s, fmt.Errorf("%s: expect[%d]: missing detector", s.id, i)
		case e.Value == nil || *e.Value == "":
			return s, fmt.Errorf("%s: expect[%d]: missing value", s.id, i)
		case !known[*e.Detector]:
			return s, fmt.Errorf("%s: expect[%d]: unknown detector id %q", s.id, i, *e.Detector)
		case !strings.Contains(s.text, *e.Value):
			return s, fmt.Errorf("%s: expect[%d]: value %q is not a substring of text", s.id, i, *e.Value)
		}
		if e.Encoding != "" {
			for _, layer := range strings.Split(e.Encoding, "+") {
				if !corpusEncodings[layer] {
					return s, fmt.Errorf("%s: expect[%d]: unknown encoding %q", s.id, i, e.Encoding)
				}
			}
		}
		key := [2]string{*e.Detector, *e.Value}
		if seen[key] {
			return s, fmt.Errorf("%s: expect[%d]: duplicate item %s %q", s.id, i, key[0], key[1])
		}
		seen[key] = true
		s.expect = append(s.expect, corpusItem{
			detector: *e.Detector,
			value:    *e.Value,
			encoding: e.Encoding,
			spans:    corpusOccurrences(s.text, *e.Value),
		})
	}
	return s, nil
}

// corpusOccurrences returns the byte spans of every (possibly overlapping) occurrence of v in text.
func corpusOccurrences(text, v string) [][2]int {
	var spans [][2]int
	for from := 0; ; {
		i := strings.Index(text[from:], v)
		if i < 0 {
			return spans
		}
		start := from + i
		spans = append(spans, [2]int{start, start + len(v)})
		from = start + 1
	}
}

func corpusOverlaps(m Match, span [2]int) bool {
	return m.Offset < span[1] && span[0] < m.Offset+m.Length
}

func (it corpusItem) hitBy(m Match) bool {
	if m.Detector != it.detector {
		return false
	}
	for _, sp := range it.spans {
		if corpusOverlaps(m, sp) {
			return true
		}
	}
	return false
}

// corpusSameLayers reports whether two encoding chains name the same set of layers
// ("base64+url" and "url+base64" do; the order convention is the scanner's).
func corpusSameLayers(a, b string) bool {
	set := func(s string) string {
		parts := strings.Split(s, "+")
		sort.Strings(parts)
		out := parts[:0]
		for i, p := range parts {
			if i == 0 || p != parts[i-1] {
				out = append(out, p)
			}
		}
		return strings.Join(out, "+")
	}
	return set(a) == set(b)
}

func corpusShown(text string, m Match) string {
	if m.Offset < 0 || m.Length < 0 || m.Offset+m.Length > len(text) {
		return fmt.Sprintf("<span %d+%d out of range>", m.Offset, m.Length)
	}
	s := text[m.Offset : m.Offset+m.Length]
	if len(s) > corpusMaxShownSpanSize {
		s = s[:corpusMaxShownSpanSize] + "..."
	}
	return fmt.Sprintf("%q", s)
}

type corpusStats struct {
	positives, tp, fn, fp int
	encoded, encodedTP    int
	contexts              map[string]int
}

func corpusRatio(num, den int) float64 {
	if den == 0 {
		return 1
	}
	return float64(num) / float64(den)
}

func TestCorpus(t *testing.T) {
	samples := corpusLoad(t)
	var only *regexp.Regexp
	if *corpusOnly != "" {
		var err error
		if only, err = regexp.Compile(*corpusOnly); err != nil {
			t.Fatalf("-corpus.only: %v", err)
		}
	}

	s, err := NewScanner(Options{})
	if err != nil {
		t.Fatalf("NewScanner: %v", err)
	}

	stats := make(map[string]*corpusStats, len(corpusDetectors))
	for _, d := range corpusDetectors {
		stats[d] = &corpusStats{contexts: map[string]int{}}
	}
	var (
		negatives, negativesClean int
		ctxSamples                = map[string]int{}
		problems                  []string
		ran                       int
	)
	for _, smp := range samples {
		if only != nil && !only.MatchString(smp.id) {
			continue
		}
		ran++
		ctxSamples[smp.context]++
		ms := s.Detect([]byte(smp.text))
		if only != nil {
			for _, m := range ms {
				t.Logf("%s: %s %s enc=%q conf=%.2f", smp.id, m.Detector, corpusShown(smp.text, m), m.Encoding, m.Confidence)
			}
		}
		for _, m := range ms {
			if m.Offset < 0 || m.Length <= 0 || m.Offset+m.Length > len(smp.text) {
				t.Errorf("%s: %s match has a bad span %d+%d (text is %d bytes)", smp.id, m.Detector, m.Offset, m.Length, len(smp.text))
			}
			if _, ok := stats[m.Detector]; !ok {
				t.Errorf("%s: match with unknown detector id %q: %s", smp.id, m.Detector, corpusShown(smp.text, m))
			}
		}
		for _, it := range smp.expect {
			st := stats[it.detector]
			st.positives++
			st.contexts[smp.context]++
			if it.encoding != "" {
				st.encoded++
			}
			var hits []Match
			for _, m := range ms {
				if it.hitBy(m) {
					hits = append(hits, m)
				}
			}
			if len(hits) == 0 {
				st.fn++
				problems = append(problems, fmt.Sprintf("FN %-24s %-22s expected %q%s", smp.id, it.detector, it.value, corpusEncSuffix(it.encoding)))
				continue
			}
			st.tp++
			if it.encoding == "" {
				continue
			}
			okEnc := false
			var got []string
			for _, m := range hits {
				got = append(got, corpusEncName(m.Encoding))
				if m.Encoding != "" && corpusSameLayers(m.Encoding, it.encoding) {
					okEnc = true
				}
			}
			if okEnc {
				st.encodedTP++
			} else {
				problems = append(problems, fmt.Sprintf("ENC %-23s %-22s found %q but with encoding %s, want %q", smp.id, it.detector, it.value, strings.Join(got, ","), it.encoding))
			}
		}
		for _, m := range ms {
			st, ok := stats[m.Detector]
			if !ok {
				continue
			}
			matched := false
			for _, it := range smp.expect {
				if it.hitBy(m) {
					matched = true
					break
				}
			}
			if !matched {
				st.fp++
				problems = append(problems, fmt.Sprintf("FP %-24s %-22s matched %s [%d:%d]%s", smp.id, m.Detector, corpusShown(smp.text, m), m.Offset, m.Offset+m.Length, corpusEncSuffix(m.Encoding)))
			}
		}
		if len(smp.expect) == 0 {
			negatives++
			if len(ms) == 0 {
				negativesClean++
			}
		}
	}

	// The table.
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-24s %5s %5s %4s %4s %4s %9s %7s %5s %s\n", "detector", "pos", "TP", "FP", "FN", "enc", "precision", "recall", "ctxs", "contexts")
	var tot corpusStats
	for _, d := range corpusDetectors {
		st := stats[d]
		tot.positives += st.positives
		tot.tp += st.tp
		tot.fp += st.fp
		tot.fn += st.fn
		tot.encoded += st.encoded
		tot.encodedTP += st.encodedTP
		var ctxs []string
		for c, n := range st.contexts {
			ctxs = append(ctxs, fmt.Sprintf("%s:%d", c, n))
		}
		sort.Strings(ctxs)
		fmt.Fprintf(&b, "%-24s %5d %5d %4d %4d %4d %9.3f %7.3f %5d %s\n", d, st.positives, st.tp, st.fp, st.fn, st.encoded,
			corpusRatio(st.tp, st.tp+st.fp), corpusRatio(st.tp, st.positives), len(st.contexts), strings.Join(ctxs, " "))
	}
	fmt.Fprintf(&b, "%-24s %5d %5d %4d %4d %4d %9.3f %7.3f\n", "ALL", tot.positives, tot.tp, tot.fp, tot.fn, tot.encoded,
		corpusRatio(tot.tp, tot.tp+tot.fp), corpusRatio(tot.tp, tot.positives))
	var cs []string
	for c, n := range ctxSamples {
		cs = append(cs, fmt.Sprintf("%s:%d", c, n))
	}
	sort.Strings(cs)
	fmt.Fprintf(&b, "samples: %d (%s); hard negatives: %d, clean: %d; encoded positives: %d, found with their encoding: %d\n",
		ran, strings.Join(cs, " "), negatives, negativesClean, tot.encoded, tot.encodedTP)
	t.Log(b.String())
	if len(problems) > 0 {
		t.Logf("%d FN/FP/encoding problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}

	if only != nil {
		return
	}

	// Corpus composition.
	for _, d := range corpusDetectors {
		st := stats[d]
		if st.positives < corpusMinPositives {
			t.Errorf("corpus: %s has %d positives, want >= %d", d, st.positives, corpusMinPositives)
		}
		if len(st.contexts) < corpusMinContexts {
			t.Errorf("corpus: %s positives span %d contexts, want >= %d", d, len(st.contexts), corpusMinContexts)
		}
	}
	if tot.encoded < corpusMinEncoded {
		t.Errorf("corpus: %d encoded positives, want >= %d", tot.encoded, corpusMinEncoded)
	}
	if negatives < corpusMinNegatives {
		t.Errorf("corpus: %d hard negatives, want >= %d", negatives, corpusMinNegatives)
	}

	// Scanner quality.
	for _, d := range corpusDetectors {
		st := stats[d]
		if p := corpusRatio(st.tp, st.tp+st.fp); p < corpusMinPrecision {
			t.Errorf("%s: precision %.3f (TP %d, FP %d), want >= %.2f", d, p, st.tp, st.fp, corpusMinPrecision)
		}
		if r := corpusRatio(st.tp, st.positives); r < corpusMinRecall {
			t.Errorf("%s: recall %.3f (TP %d of %d, FN %d), want >= %.2f", d, r, st.tp, st.positives, st.fn, corpusMinRecall)
		}
	}
	if p := corpusRatio(tot.tp, tot.tp+tot.fp); p < corpusMinPrecision {
		t.Errorf("overall precision %.3f (TP %d, FP %d), want >= %.2f", p, tot.tp, tot.fp, corpusMinPrecision)
	}
	if r := corpusRatio(tot.tp, tot.positives); r < corpusMinRecall {
		t.Errorf("overall recall %.3f (TP %d of %d), want >= %.2f", r, tot.tp, tot.positives, corpusMinRecall)
	}
	if tot.encodedTP != tot.encoded {
		t.Errorf("encoded positives: %d of %d found on their encoded run with the expected encoding layers", tot.encodedTP, tot.encoded)
	}
}

func corpusEncSuffix(enc string) string {
	if enc == "" {
		return ""
	}
	return " (" + enc + ")"
}

func corpusEncName(enc string) string {
	if enc == "" {
		return `""`
	}
	return enc
}

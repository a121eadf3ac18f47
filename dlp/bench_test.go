package dlp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// The benchmarks' inputs are generated from fixed seeds, so every run
// scans the same bytes. MB/s (b.SetBytes) is the figure to compare: the
// adversarial inputs must stay within a small factor of the mixed text,
// whatever they repeat.

// benchWords is the prose vocabulary.
var benchWords = strings.Fields(`the a of to and in is it that for on with as was be by this are or from at
	an which but not have has had were all can will one their there been if more when no would so what
	out up into about than them then some could only other these two may first also new after used any
	request response server client backend gateway message session token value field record customer
	order invoice shipment report config deploy cluster node service queue retry timeout latency error
	warning failed succeeded pending approved rejected user account profile address payment summary`)

// benchLine returns one line of mixed content: prose, a log line, code,
// configuration or JSON, without a finding.
func benchLine(r *rand.Rand) string {
	switch r.IntN(5) {
	case 0: // prose
		n := 8 + r.IntN(14)
		w := make([]string, n)
		for i := range w {
			w[i] = benchWords[r.IntN(len(benchWords))]
		}
		return strings.ToUpper(w[0][:1]) + strings.Join(w, " ")[1:] + "."
	case 1: // log
		return fmt.Sprintf("2024-%02d-%02dT%02d:%02d:%02d.%03dZ %s service=%s req_id=%08x latency_ms=%d path=/v1/%s/%d status=%d",
			1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000),
			[]string{"INFO ", "WARN ", "DEBUG", "ERROR"}[r.IntN(4)], benchWords[r.IntN(len(benchWords))],
			r.Uint32(), r.IntN(900), benchWords[r.IntN(len(benchWords))], r.IntN(100000), []int{200, 201, 204, 400, 404, 500}[r.IntN(6)])
	case 2: // code
		return []string{
			"func (s *Server) handle(ctx context.Context, req *Request) (*Response, error) {",
			"\tfor i := 0; i < len(items); i++ { total += items[i].Price * float64(items[i].Qty) }",
			"    if resp.status_code != 200: raise RuntimeError(f\"upload failed: {resp.text}\")",
			"const retries = 3; let backoff = Math.min(2 ** attempt * 100, 5000); // ms",
			"\treturn fmt.Errorf(\"open %s: %w\", path, err)",
			"SELECT id, name, created_at FROM orders WHERE status = 'pending' ORDER BY id LIMIT 50;",
			"import { readFile } from 'node:fs/promises'; const cfg = JSON.parse(await readFile(p, 'utf8'));",
		}[r.IntN(7)]
	case 3: // configuration
		return fmt.Sprintf("%s_%s: %d  # %s %s", benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))], r.IntN(10000),
			benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))])
	default: // JSON
		return fmt.Sprintf(`{"id": %d, "name": "%s %s", "price": %d.%02d, "tags": ["%s", "%s"], "updated_at": "2024-01-%02dT10:22:31Z", "version": "1.%d.%d"}`,
			r.IntN(1000000), benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))], r.IntN(500), r.IntN(100),
			benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))], 1+r.IntN(28), r.IntN(20), r.IntN(40))
	}
}

// benchFinding returns a short text holding one finding.
func benchFinding(r *rand.Rand) string {
	secrets := fuzzSecretValues()
	switch r.IntN(12) {
	case 0:
		return fmt.Sprintf("contact %s.%s@example.com", benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))])
	case 1:
		return fmt.Sprintf("call +1 415 555 %04d", r.IntN(10000))
	case 2:
		return fmt.Sprintf("client %d.%d.%d.%d", 10+r.IntN(200), r.IntN(256), r.IntN(256), 1+r.IntN(254))
	case 3:
		return "card 4111 1111 1111 1111"
	case 4:
		return "iban DE89 3704 0044 0532 0130 00"
	case 5:
		return "ssn 536-22-8974"
	case 6:
		return fmt.Sprintf("phone: (415) 555-%04d", r.IntN(10000))
	case 7:
		return "redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb%3Fuser%3Djane%40example.com"
	case 8:
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("deploy-bot:"+secrets[1]))
	case 9:
		return "DATABASE_URL=postgres://app:S3cr3t-pa55w0rd@db.internal:5432/app"
	case 10:
		return `api_key = "` + fmt.Sprintf("%x", r.Uint64()) + `Qz"`
	default:
		s := secrets[r.IntN(len(secrets))]
		if strings.HasPrefix(s, "-----BEGIN") {
			s = fuzzJWT
		}
		return "token " + s
	}
}

// benchMixedText returns about n bytes of mixed lines with a finding in
// about one line in four (a few findings per KB).
func benchMixedText(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5a11))
	var b bytes.Buffer
	b.Grow(n + 512)
	for b.Len() < n {
		line := benchLine(r)
		if r.IntN(4) == 0 {
			words := strings.Fields(line)
			k := r.IntN(len(words) + 1)
			line = strings.Join(append(words[:k:k], append([]string{benchFinding(r)}, words[k:]...)...), " ")
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

var benchMixed = sync.OnceValue(func() []byte { return benchMixedText(1, 1<<20) })

func benchScanner(b *testing.B) *dlp.Scanner {
	b.Helper()
	s, err := dlp.NewScanner(dlp.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// scanBench scans text b.N times and reports MB/s and findings per KB.
func scanBench(b *testing.B, s *dlp.Scanner, text []byte) {
	b.Helper()
	ms, err := s.Scan(text)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Scan(text); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ms))/float64(len(text))*1024, "findings/KB")
}

// BenchmarkScanMixedText scans 1 MiB of prose, logs, code, configuration
// and JSON with a few findings per KB, as one text.
func BenchmarkScanMixedText(b *testing.B) {
	scanBench(b, benchScanner(b), benchMixed())
}

// benchResult builds a realistic tools/call result of about n bytes: text
// content items cut from the mixed text, and structured rows with
// customer records.
func benchResult(seed uint64, n int) json.RawMessage {
	r := rand.New(rand.NewPCG(seed, 0xbe7c))
	text := benchMixedText(seed+100, 4*n+4096)
	var content, rows []string
	size := 64
	for off := 0; size < n; {
		if r.IntN(3) == 0 {
			id := r.IntN(100000)
			row := fmt.Sprintf(`{"id":%d,"name":"%s %s","email":"customer%d@example.com","phone":"+44 20 7946 %04d","balance":%d.%02d,"note":%s}`,
				id, benchWords[r.IntN(len(benchWords))], benchWords[r.IntN(len(benchWords))], id, r.IntN(10000), r.IntN(10000), r.IntN(100),
				jsonrpc.Quote(benchLine(r)))
			rows = append(rows, row)
			size += len(row) + 1
			continue
		}
		k := min(60+r.IntN(400), n-size)
		k = max(k, 16)
		if off+k > len(text) {
			off = 0
		}
		item := `{"type":"text","text":` + string(jsonrpc.Quote(string(text[off:off+k]))) + `}`
		off += k
		content = append(content, item)
		size += len(item) + 1
	}
	return json.RawMessage(`{"content":[` + strings.Join(content, ",") + `],"structuredContent":{"rows":[` + strings.Join(rows, ",") + `]},"isError":false}`)
}

// BenchmarkScanJSONMessage scans tools/call results of 1 KiB and 64 KiB
// through ScanMessage: the JSON walk, every string and long number.
func BenchmarkScanJSONMessage(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		res := benchResult(uint64(size), size)
		if !json.Valid(res) {
			b.Fatalf("benchResult(%d) is not JSON", size)
		}
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := benchScanner(b)
			m := &jsonrpc.Message{ID: json.RawMessage("7"), Result: res}
			locs, err := s.ScanMessage(m)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(res)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.ScanMessage(m); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(locs)), "findings/msg")
		})
	}
}

// stageBench1KB is a 1 KiB tools/call result of the demo backend's
// lookup_customer with a couple of findings: an email and a card number
// (the demo rule redacts both) and an IP address (flagged), then prose
// notes. The load harness's dlp mode times the same message.
var stageBench1KB = sync.OnceValue(func() json.RawMessage {
	text := "Customer 4471: Jane Doe, jane.doe@example.com, card 4111 1111 1111 1111, last login from 203.0.113.42. " +
		"Notes: the customer asked about the status of order 88123, which shipped on 2024-03-05 from the Leeds warehouse " +
		"and is due on Friday. Previous orders: 87001 (delivered), 86522 (returned, refund issued 2024-01-22). " +
		"Preferred contact is email; marketing opt-out recorded. Account tier: gold since 2021, renewal in November. " +
		"Open tickets: none. Last agent: R. Patel, who noted that the delivery address was updated to the office " +
		"address after the January move. Loyalty points: 12,450; the next reward threshold is 15,000 points. "
	for len(text) < 940 {
		text += "The customer mentioned that the previous parcel arrived on time and in good condition. "
	}
	return json.RawMessage(`{"content":[{"type":"text","text":` + string(jsonrpc.Quote(text[:940])) + `}],"isError":false}`)
})

// stageBenchMixed is 1 KiB of the mixed lines (logs, code, JSON) with
// the same record first: more for the validators to look at.
var stageBenchMixed = sync.OnceValue(func() json.RawMessage {
	rec := `Customer 4471: Jane Doe, jane.doe@example.com, card 4111 1111 1111 1111, last login from 203.0.113.42. `
	r := rand.New(rand.NewPCG(1024, 1))
	var b strings.Builder
	b.WriteString(rec)
	for b.Len() < 900 {
		b.WriteString(benchLine(r))
		b.WriteByte(' ')
	}
	return json.RawMessage(`{"content":[{"type":"text","text":` + string(jsonrpc.Quote(b.String()[:900])) + `}],"isError":false}`)
})

// stageBenchClean is the same size without a finding.
var stageBenchClean = sync.OnceValue(func() json.RawMessage {
	r := rand.New(rand.NewPCG(1024, 2))
	var b strings.Builder
	for b.Len() < 900 {
		b.WriteString(benchLine(r))
		b.WriteByte(' ')
	}
	return json.RawMessage(`{"content":[{"type":"text","text":` + string(jsonrpc.Quote(b.String()[:900])) + `}],"isError":false}`)
})

var stageBaselineNs float64 // ns/op of BenchmarkStage1KB/baseline, for the added cost

// BenchmarkStage1KB passes a 1 KiB tools/call result through the
// compiled chain with a delivery that does nothing: baseline is the bare
// chain, dlp the chain with the DLP stage (configuration defaults and
// the demo's rule: the result's email and card are redacted, the rest
// flagged), dlp-mixed the same on logs, code and JSON, dlp-clean on a
// result without findings.
// added-us/op is the stage's cost per message over baseline (run
// baseline in the same invocation).
func BenchmarkStage1KB(b *testing.B) {
	stage, err := dlp.NewStage(config.Demo("sallyport", "/nonexistent").DLP, nil)
	if err != nil {
		b.Fatal(err)
	}
	deliver := func(context.Context, *gateway.Exchange) error { return nil }
	principal := &gateway.Principal{ID: "bench"}
	run := func(b *testing.B, chain gateway.Handler, res json.RawMessage, baseline bool) {
		ctx := context.Background()
		req := gateway.NewExchange(deliver)
		req.Direction, req.Kind, req.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
		req.Backend, req.Target = "demo", "lookup_customer"
		call := func(id int) error {
			x := gateway.NewExchange(deliver)
			x.Direction, x.Kind, x.Method = gateway.BackendToClient, gateway.KindResult, "tools/call"
			x.Principal, x.Backend, x.Target, x.Request = principal, "demo", "lookup_customer", req
			x.Message = &jsonrpc.Message{ID: json.RawMessage(strconv.Itoa(id)), Result: res}
			return chain.Handle(ctx, x)
		}
		if err := call(0); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(res)))
		b.ReportAllocs()
		id := 0
		for b.Loop() {
			id++
			if err := call(id); err != nil {
				b.Fatal(err)
			}
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if baseline {
			stageBaselineNs = ns
		} else if stageBaselineNs > 0 {
			b.ReportMetric((ns-stageBaselineNs)/1e3, "added-us/op")
		}
	}
	b.Run("baseline", func(b *testing.B) { run(b, gateway.Chain(), stageBench1KB(), true) })
	b.Run("dlp", func(b *testing.B) { run(b, gateway.Chain(stage), stageBench1KB(), false) })
	b.Run("dlp-mixed", func(b *testing.B) { run(b, gateway.Chain(stage), stageBenchMixed(), false) })
	b.Run("dlp-clean", func(b *testing.B) { run(b, gateway.Chain(stage), stageBenchClean(), false) })
}

// benchAdversarial are 1 MiB inputs that stress the validators: every
// anchor or shape they start on, over and over.
func benchAdversarial() []struct {
	name string
	text []byte
} {
	const n = 1 << 20
	fill := func(unit string) []byte { return bytes.Repeat([]byte(unit), n/len(unit)+1)[:n] }
	r := rand.New(rand.NewPCG(7, 7))
	digits := make([]byte, n)
	for i := range digits {
		if r.IntN(4) == 0 {
			digits[i] = " -.-() +/"[r.IntN(9)]
		} else {
			digits[i] = byte('0' + r.IntN(10))
		}
	}
	b64 := func(lineLen int) []byte {
		var b bytes.Buffer
		for i := uint64(0); b.Len() < n; i++ {
			enc := base64.StdEncoding.EncodeToString(benchMixedText(100+i, lineLen*3/4))
			b.WriteString(enc)
			b.WriteByte('\n')
		}
		return b.Bytes()[:n]
	}
	return []struct {
		name string
		text []byte
	}{
		{"digits-and-separators", digits},
		{"at-signs", fill("@")},
		{"email-shapes", fill("a.b-c@d-e.f")},
		{"sk-dash", fill("sk-")},
		{"sk-spaced", fill("sk- ")},
		{"begin-private-key", fill("-----BEGIN PRIVATE KEY-----\n")},
		{"base64-runs-4KiB", b64(4 << 10)},
		{"base64-run-1MiB", b64(n + 4)},
		{"percent-41", fill("%41")},
		{"jwt-shapes", fill("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0. ")},
		{"secret-names", fill("token")},
		{"assignments", fill("password=")},
		{"colons", fill("1:")},
		{"iban-starts", fill("DE89 ")},
		{"scheme-separators", fill("postgres://")},
	}
}

// BenchmarkScanAdversarial scans inputs built to make validators work
// hard. Their MB/s must stay within a small factor of
// BenchmarkScanMixedText's: the scan is linear whatever the input.
func BenchmarkScanAdversarial(b *testing.B) {
	s := benchScanner(b)
	for _, tc := range benchAdversarial() {
		b.Run(tc.name, func(b *testing.B) { scanBench(b, s, tc.text) })
	}
}

// BenchmarkScanCorpusTexts scans the labelled corpus's texts one by one,
// as the load harness's dlp mode does (dense: most texts hold a finding,
// about 120 bytes each): the per-scan overhead shows here.
func BenchmarkScanCorpusTexts(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("testdata", "corpus", "*.jsonl"))
	var texts [][]byte
	total := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		for line := range bytes.SplitSeq(data, []byte("\n")) {
			var s struct{ Text string }
			if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &s) != nil || s.Text == "" {
				continue
			}
			texts = append(texts, []byte(s.Text))
			total += len(s.Text)
		}
	}
	if len(texts) == 0 {
		b.Skip("no corpus in testdata/corpus")
	}
	s := benchScanner(b)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range texts {
			s.Scan(t)
		}
	}
}

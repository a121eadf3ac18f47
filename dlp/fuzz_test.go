package dlp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// The fuzzers check the scanner's invariants on any input: it never
// panics, every span lies inside the scanned text, matches come in offset
// order, a scan is deterministic, the decoding budget is honoured, and a
// message scan's paths and values are usable by the stage. Their seeds
// (and the benchmarks' inputs) are corpus-like samples built here.

// fuzzChecksumToken returns prefix + body + the base62 CRC-32 of body,
// as GitHub and npm tokens carry it (the detectors check it).
func fuzzChecksumToken(prefix, body string) string {
	const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	sum := crc32.ChecksumIEEE([]byte(body))
	var enc [6]byte
	for i := 5; i >= 0; i-- {
		enc[i] = base62[sum%62]
		sum /= 62
	}
	return prefix + body + string(enc[:])
}

// fuzzJWT is a signed JWT whose header and payload decode to JSON.
const fuzzJWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

// fuzzPEM is an RSA private key block (its body is not a real key; the
// detector only needs the shape).
const fuzzPEM = "-----BEGIN RSA PRIVATE KEY-----\n" +
	"MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n" +
	"VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n" +
	"LxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW/VDL5AaWTg0nLVkjRo\n" +
	"-----END RSA PRIVATE KEY-----"

// fuzzSecretValues are secrets of most detectors, valid by their
// validators.
func fuzzSecretValues() []string {
	return []string{
		"AKIAZ7Q3M5N2XK4WLP6R",
		fuzzChecksumToken("ghp_", "k3Vq9ZrT1mWc7XyB2nLp8sDf4GhJ0a"),
		fuzzChecksumToken("gho_", "Pq7Lm2Nx9Rt4Vb8Zc1Wd6Ys3Kf5Hg0"),
		fuzzChecksumToken("ghs_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5"),
		fuzzChecksumToken("npm_", "Zx9Cv8Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0"),
		"github_pat_11ABCDEFG0123456789abc_" + strings.Repeat("aB3dE6gH9j", 5) + "K2mN4pQ6r",
		"glpat-Xy7zQ2wE9rT4uI1oP3aS",
		"xoxb-1234567890123-9876543210987-AbCdEfGhIjKlMnOpQrStUvWx",
		"xoxp-1234567890-2345678901-3456789012-0123456789abcdef0123456789abcdef",
		"https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/aBcDeFgHiJkLmNoPqRsTuVwX",
		"sk_live_51Hq3zK2eZvKYlo2C8xQ9wR7t",
		"AIzaSyD9x8C7v6B5n4M3l2K1j0H9g8F7e6D5c4b",
		"sk-proj-" + strings.Repeat("Ab3Cd5Ef7G", 3) + "T3BlbkFJ" + strings.Repeat("hJ2kL4mN6p", 3),
		"sk-ant-api03-" + strings.Repeat("aB3-dE6_gH9", 8) + "jK1mN" + "AA",
		fuzzJWT,
		fuzzPEM,
	}
}

// fuzzSeedTexts are corpus-like texts: findings of every detector in
// prose, logs, code and JSON, encoded ones, and hard negatives.
func fuzzSeedTexts() []string {
	s := fuzzSecretValues()
	b64 := base64.StdEncoding.EncodeToString([]byte("export GITHUB_TOKEN=" + s[1] + "\n"))
	b64b64 := base64.StdEncoding.EncodeToString([]byte(b64))
	hx := hex.EncodeToString([]byte("aws_access_key_id = " + s[0]))
	texts := []string{
		"Contact jane.doe@example.com or call +1 415 555 0132 about order 88123.",
		"Card on file: 4111 1111 1111 1111, exp 12/29. Backup: 5500-0000-0000-0004.",
		"SSN 536-22-8974; IBAN DE89 3704 0044 0532 0130 00; acct no. 123456789012",
		"2024-01-15T10:22:31Z INFO request from 203.0.113.42 to 2001:db8::8a2e:370:7334 took 12ms",
		"phone: 4155550132 (mobile 07700 900123, office (415) 555-0132, UK 020 7946 0958)",
		"export AWS_ACCESS_KEY_ID=" + s[0] + "\nexport aws_secret_access_key=Zq3pL8vN2xR5tW9yB4cF7hJ1kM6nQ0sD3gV8aE2u",
		"git remote set-url origin https://x-access-token:" + s[1] + "@github.com/org/repo.git",
		`{"token":"` + s[2] + `","refresh":"` + s[3] + `"}`,
		"//registry.npmjs.org/:_authToken=" + s[4],
		"GH_FINE=" + s[5] + " GITLAB=" + s[6],
		"slack: " + s[7] + " user " + s[8] + " hook " + s[9],
		"stripe.api_key = '" + s[10] + "' maps " + s[11],
		"OPENAI_API_KEY=" + s[12] + "\nANTHROPIC_API_KEY=" + s[13],
		"Authorization: Bearer " + s[14],
		"key file:\n" + s[15] + "\n",
		`{"key":"` + strings.ReplaceAll(s[15], "\n", `\n`) + `"}`,
		"DATABASE_URL=postgres://app:S3cr3t-pa55w0rd@db.internal:5432/app?sslmode=require",
		`db_password: "h7Gk2pQ9xL4mV8nZ"` + "\nclient_secret = 'Yb4Nq8Wz2Xc6Vt1Rm5Ks'",
		"payload=" + b64 + " nested=" + b64b64 + " hex=" + hx,
		"callback?token=" + url.QueryEscape(s[1]) + "&email=" + url.QueryEscape("bob@example.org"),
		// Hard negatives.
		"AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"ghp_" + strings.Repeat("a", 36) + " sk_test_51Hq3zK2eZvKYlo2C8xQ9wR7t sk-" + strings.Repeat("x", 48),
		"versions 1.2.3 v1.2.3.4 10.2.3.4.5 at 12:30:45 mac 00:1a:2b:3c:4d:5e std::vector<int>",
		"lodash@4.17.21 @types/node user@localhost 078-05-1120 123-45-6789 1700000000 94107-1234",
		`password = "hunter2" api_key = "your-api-key-here" token: ${TOKEN} progressToken: 123456789012`,
		"postgres://user:${DB_PASSWORD}@localhost/db mysql://root:changeme@127.0.0.1/x",
		"-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY----- -----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6\n-----END PUBLIC KEY-----",
		base64.StdEncoding.EncodeToString([]byte("The quick brown fox jumps over the lazy dog, again and again.")),
		"550e8400-e29b-41d4-a716-446655440000 4111111111111112 DE89370400440532013001",
		"",
		"%41%42%43%%4",
		"-----BEGIN PRIVATE KEY-----",
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
	}
	return texts
}

// checkMatches fails t unless ms are well-formed for text: spans inside
// it, non-negative, in offset order.
func checkMatches(t *testing.T, text []byte, ms []dlp.Match) {
	t.Helper()
	for i, m := range ms {
		if m.Offset < 0 || m.Length < 0 || m.Offset+m.Length > len(text) {
			t.Fatalf("match %d (%s) span [%d,+%d) outside the text of %d bytes", i, m.Detector, m.Offset, m.Length, len(text))
		}
		if m.Detector == "" {
			t.Fatalf("match %d has no detector", i)
		}
		if i > 0 && ms[i-1].Offset > m.Offset {
			t.Fatalf("matches out of order: %d at %d before %d at %d", i-1, ms[i-1].Offset, i, m.Offset)
		}
	}
}

func fuzzScanner(tb testing.TB, opts dlp.Options) *dlp.Scanner {
	tb.Helper()
	s, err := dlp.NewScanner(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// FuzzScan: any bytes. Scan never panics, its matches are well-formed,
// Detect agrees with it, and a second scan gives the same answer.
func FuzzScan(f *testing.F) {
	for _, t := range fuzzSeedTexts() {
		f.Add([]byte(t))
	}
	s := fuzzScanner(f, dlp.Options{})
	f.Fuzz(func(t *testing.T, text []byte) {
		orig := bytes.Clone(text)
		ms, err := s.Scan(text)
		if !bytes.Equal(text, orig) {
			t.Fatal("Scan modified its input")
		}
		if err != nil && !errors.Is(err, dlp.ErrLimit) {
			t.Fatalf("Scan error %v does not wrap ErrLimit", err)
		}
		checkMatches(t, text, ms)
		again, err2 := s.Scan(text)
		if !slices.Equal(ms, again) || (err == nil) != (err2 == nil) {
			t.Fatalf("Scan is not deterministic:\n%+v (%v)\n%+v (%v)", ms, err, again, err2)
		}
		if d := s.Detect(text); !slices.Equal(d, ms) {
			t.Fatalf("Detect %+v, Scan %+v", d, ms)
		}
	})
}

// Encodings FuzzDecode wraps its payload in.
const (
	encBase64 = iota
	encBase64URL
	encHex
	encURL
	encBase64Twice
	encHexOfBase64
	encURLOfBase64
	encBase64OfURL
	numEncodings
)

func fuzzEncode(payload []byte, mode uint8) string {
	switch mode % numEncodings {
	case encBase64:
		return base64.StdEncoding.EncodeToString(payload)
	case encBase64URL:
		return base64.RawURLEncoding.EncodeToString(payload)
	case encHex:
		return hex.EncodeToString(payload)
	case encURL:
		// Every byte escaped, as a careless encoder would.
		var b strings.Builder
		for _, c := range payload {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		return b.String()
	case encBase64Twice:
		return base64.StdEncoding.EncodeToString([]byte(base64.StdEncoding.EncodeToString(payload)))
	case encHexOfBase64:
		return hex.EncodeToString([]byte(base64.StdEncoding.EncodeToString(payload)))
	case encURLOfBase64:
		return url.QueryEscape(base64.StdEncoding.EncodeToString(payload))
	default: // encBase64OfURL
		return base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(string(payload))))
	}
}

// FuzzDecode: encoded runs inside text. The invariants of FuzzScan hold;
// a scan under a small decoding budget either fails with ErrLimit or
// finds exactly what an unlimited scan finds; a budget above what the
// text can possibly need never fails; and a failed scan's matches are the
// caller's (a later scan does not change them).
func FuzzDecode(f *testing.F) {
	for i, v := range fuzzSecretValues() {
		f.Add("token: ", []byte(v), " end", uint8(i), uint16(64))
		f.Add("", []byte("x="+v), "", uint8(i+3), uint16(4096))
	}
	f.Add("a ", []byte("jane.doe@example.com 4111 1111 1111 1111"), " b", uint8(encURL), uint16(10))
	f.Add("", []byte("plain ordinary words, nothing to find here at all"), "", uint8(encBase64Twice), uint16(0))
	f.Add("%%", []byte{0xff, 0, 1, 2}, "==", uint8(encHex), uint16(1))
	unlimited := fuzzScanner(f, dlp.Options{MaxDecodedBytes: 1 << 30})
	f.Fuzz(func(t *testing.T, prefix string, payload []byte, suffix string, mode uint8, limit uint16) {
		if len(payload) > 4096 || len(prefix)+len(suffix) > 4096 {
			return
		}
		text := []byte(prefix + fuzzEncode(payload, mode) + suffix)
		want, err := unlimited.Scan(text)
		if err != nil {
			t.Fatalf("a 1 GiB budget failed on %d bytes: %v", len(text), err)
		}
		checkMatches(t, text, want)

		lim := int(limit) + 1
		s := fuzzScanner(t, dlp.Options{MaxDecodedBytes: lim})
		got, err := s.Scan(text)
		checkMatches(t, text, got)
		kept := slices.Clone(got)
		switch {
		case err != nil:
			if !errors.Is(err, dlp.ErrLimit) {
				t.Fatalf("Scan error %v does not wrap ErrLimit", err)
			}
			// Decoding at depth 0 and 1 cannot need more than about
			// 10 bytes per byte of text: at each depth, URL-encoded runs
			// (overlapping by at most their look-back) and base64 and
			// hex runs (decoding to less) give at most 2.75 bytes of
			// decoded text per byte.
			if lim >= 11*len(text) {
				t.Fatalf("budget %d for %d bytes of text exceeded: %v", lim, len(text), err)
			}
		case !slices.Equal(got, want):
			t.Fatalf("budget %d not exceeded but the findings differ:\n%+v\nunlimited: %+v", lim, got, want)
		}
		// A scan in between must not change what the first returned.
		if _, err := s.Scan([]byte(fuzzEncode(bytes.Repeat([]byte("jane@example.com "), 8), encBase64))); err != nil && !errors.Is(err, dlp.ErrLimit) {
			t.Fatal(err)
		}
		if !slices.Equal(got, kept) {
			t.Fatalf("a later scan changed the matches an earlier one returned:\n%+v\nwas %+v", got, kept)
		}
		again, err2 := s.Scan(text)
		if !slices.Equal(got, again) || (err == nil) != (err2 == nil) {
			t.Fatalf("Scan is not deterministic:\n%+v (%v)\n%+v (%v)", got, err, again, err2)
		}
	})
}

// FuzzScanMessage: arbitrary JSON as the params of a tools/call request.
// ScanMessage never panics on what the codec accepts; every finding's
// path parses, names a string (or number) the message holds, and the
// finding's Value is the text at its span.
func FuzzScanMessage(f *testing.F) {
	for _, t := range fuzzSeedTexts() {
		q := string(jsonrpc.Quote(t))
		f.Add(`{"name":"fs__read","arguments":{"path":` + q + `}}`)
		f.Add(`{"name":"x","arguments":{"api_key":` + q + `,"list":[` + q + `,12,` + q + `]}}`)
	}
	f.Add(`{"name":"x","arguments":{"weird key \"ghp\"":"a","😀":["jane@example.com"],"n":4111111111111111,"e":"\u0041KIAZ7Q3M5N2XK4WLP6R"}}`)
	f.Add(`{"name":"x","arguments":{"password":"h7Gk2pQ9xL4mV8nZ","nested":{"a":{"b":[[["sk_live_51Hq3zK2eZvKYlo2C8xQ9wR7t"]]]}}}}`)
	f.Add(`{}`)
	f.Add(`{"a":"\ud83d\ude00 \ud83d x \\u0041 \/ \b\f\n\r\t"}`)
	s := fuzzScanner(f, dlp.Options{})
	f.Fuzz(func(t *testing.T, params string) {
		raw := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`)
		m, err := jsonrpc.Decode(raw, jsonrpc.Limits{})
		if err != nil {
			return
		}
		locs, err := s.ScanMessage(m)
		if err != nil {
			if !errors.Is(err, dlp.ErrLimit) {
				t.Fatalf("ScanMessage failed on a message the codec accepts: %v", err)
			}
			return
		}
		for i := range locs {
			l := &locs[i]
			if l.Offset < 0 || l.Length <= 0 {
				t.Fatalf("finding %d (%s at %s) has span [%d,+%d)", i, l.Detector, l.Path, l.Offset, l.Length)
			}
			p, err := gateway.ParsePath(l.Path)
			if err != nil {
				t.Fatalf("finding %d (%s): path %q does not parse: %v", i, l.Detector, l.Path, err)
			}
			if p.String() != l.Path {
				t.Fatalf("path %q reads back as %q", l.Path, p.String())
			}
			v := l.Value()
			if len(v) != l.Length {
				t.Fatalf("finding %d (%s at %s): Value %q is %d bytes, span %d", i, l.Detector, l.Path, v, len(v), l.Length)
			}
			if !l.InKey {
				// The path names the value: replacing it must find it.
				_, n := gateway.ReplaceValues(m, []gateway.Replacement{{Path: p, Value: jsonrpc.Quote("x")}})
				if n != 1 {
					t.Fatalf("finding %d (%s): path %q names %d values in %s", i, l.Detector, l.Path, n, raw)
				}
			}
		}
		again, err := s.ScanMessage(m)
		if err != nil || len(again) != len(locs) {
			t.Fatalf("ScanMessage is not deterministic: %d then %d findings (%v)", len(locs), len(again), err)
		}
		for i := range locs {
			if again[i].Match != locs[i].Match || again[i].Path != locs[i].Path || again[i].Value() != locs[i].Value() {
				t.Fatalf("ScanMessage is not deterministic at finding %d: %+v then %+v", i, locs[i], again[i])
			}
		}
	})
}

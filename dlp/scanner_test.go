package dlp

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// hit is a match as the tests compare it: detector, span, encoding.
type hit struct {
	det      string
	off, n   int
	encoding string
}

func (h hit) String() string {
	if h.encoding != "" {
		return fmt.Sprintf("%s@%d+%d(%s)", h.det, h.off, h.n, h.encoding)
	}
	return fmt.Sprintf("%s@%d+%d", h.det, h.off, h.n)
}

func hitsOf(ms []Match) []hit {
	out := []hit{}
	for _, m := range ms {
		out = append(out, hit{m.Detector, m.Offset, m.Length, m.Encoding})
	}
	return out
}

func newTestScanner(t testing.TB, opts Options) *Scanner {
	t.Helper()
	s, err := NewScanner(opts)
	if err != nil {
		t.Fatalf("NewScanner(%+v): %v", opts, err)
	}
	return s
}

// checksummed returns prefix+body+the base62 CRC-32 of body, zero-padded
// to 6: a GitHub or npm token with a valid checksum (body is 30 chars).
func checksummed(prefix, body string) string {
	sum := crc32.ChecksumIEEE([]byte(body))
	var enc [6]byte
	for i := 5; i >= 0; i-- {
		enc[i] = base62[sum%62]
		sum /= 62
	}
	return prefix + body + string(enc[:])
}

// flip changes the byte of s at i to another alphanumeric one.
func flip(s string, i int) string {
	c := byte('a')
	if s[i] == 'a' {
		c = 'b'
	}
	return s[:i] + string(c) + s[i+1:]
}

const tokenBody = "abcdefghijKLMNOPQRST0123456789" // 30 chars

var (
	ghp       = checksummed("ghp_", tokenBody)
	gho       = checksummed("gho_", tokenBody)
	ghu       = checksummed("ghu_", tokenBody)
	ghs       = checksummed("ghs_", tokenBody)
	ghr       = checksummed("ghr_", tokenBody)
	npm       = checksummed("npm_", tokenBody)
	awsKey    = "AKIAZ7Q3XK5N2BVTRW4M"
	fineGrain = "github_pat_" + "11ABCDEFG0123456789abc" + "_" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvW"
	anthropic = "sk-ant-api03-" + strings.Repeat("Ab3_x-Q9z", 11)[:93] + "AA"
	openAI    = "sk-proj-AbCdEfGhIjKlMnOpT3BlbkFJQrStUvWxYz0123456789"
	pemBody   = strings.Repeat("MIIEowIBAAKCAQEAx4Tz", 4) // 80 base64 chars
	rsaKey    = "-----BEGIN RSA PRIVATE KEY-----\n" + pemBody + "\n" + pemBody[:20] + "==\n-----END RSA PRIVATE KEY-----"
)

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func jwtOf(header, payload, sig string) string {
	return b64url(header) + "." + b64url(payload) + "." + sig
}

var jwtHS256 = jwtOf(`{"alg":"HS256","typ":"JWT"}`, `{"sub":"1234567890","name":"John Doe"}`, "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")

func TestFixtures(t *testing.T) {
	for _, tok := range []string{ghp, gho, ghu, ghs, ghr, npm} {
		if len(tok) != 40 || !checksum62([]byte(tok[4:])) {
			t.Errorf("fixture %q: want 40 chars with a valid checksum", tok)
		}
	}
	if len(fineGrain) != 93 || len(anthropic) != 108 {
		t.Errorf("fixture lengths: fine-grained %d, anthropic %d", len(fineGrain), len(anthropic))
	}
}

type detectCase struct {
	name string
	text string
	want []hit
}

func runDetect(t *testing.T, s *Scanner, tests []detectCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hitsOf(s.Detect([]byte(tt.text)))
			want := tt.want
			if want == nil {
				want = []hit{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Detect(%q)\n got %v\nwant %v", tt.text, got, want)
			}
		})
	}
}

func TestDetectPII(t *testing.T) {
	s := newTestScanner(t, Options{})
	runDetect(t, s, []detectCase{
		// EMAIL_ADDRESS
		{name: "email / in a sentence", text: "mail alice@example.com now", want: []hit{{"EMAIL_ADDRESS", 5, 17, ""}}},
		{name: "email / plus tag and subdomain", text: "<bob.smith+tag@mail.example.co.uk>", want: []hit{{"EMAIL_ADDRESS", 1, 32, ""}}},
		{name: "email / trailing dot is not the domain's", text: "write to a@b.example.org.", want: []hit{{"EMAIL_ADDRESS", 9, 15, ""}}},
		{name: "email / npm version is not one", text: "lodash@4.17.21"},
		{name: "email / scoped package is not one", text: "import @types/node"},
		{name: "email / no dot in the domain", text: "user@localhost"},
		{name: "email / one-letter tld", text: "user@example.c"},
		{name: "email / local part ends with a dot", text: "alice.@example.com"},
		{name: "email / local part starts with a dot", text: " .alice@example.com"},
		{name: "email / label starts with a dash", text: "alice@-example.com"},
		{name: "email / userinfo of a URL", text: "see https://bob@example.com/x"},
		{name: "email / userinfo with a password is the db password only", text: "mysql://root:Zr8vQ2nLx5@db.example.com/app",
			want: []hit{{"database-url-password", 13, 10, ""}}},

		// PHONE_NUMBER
		{name: "phone / E.164 with spaces", text: "+1 415 555 0132", want: []hit{{"PHONE_NUMBER", 0, 15, ""}}},
		{name: "phone / E.164 contiguous", text: "call +14155550132.", want: []hit{{"PHONE_NUMBER", 5, 12, ""}}},
		{name: "phone / UK international", text: "tel +44 20 7946 0958", want: []hit{{"PHONE_NUMBER", 4, 16, ""}}},
		{name: "phone / German with dashes", text: "+49-30-901820", want: []hit{{"PHONE_NUMBER", 0, 13, ""}}},
		{name: "phone / US parenthesised", text: "ring (415) 555-0132", want: []hit{{"PHONE_NUMBER", 5, 14, ""}}},
		{name: "phone / US dashes", text: "415-555-0132", want: []hit{{"PHONE_NUMBER", 0, 12, ""}}},
		{name: "phone / US dots", text: "415.555.0132", want: []hit{{"PHONE_NUMBER", 0, 12, ""}}},
		{name: "phone / US exchange starting with 1", text: "415-155-0132"},
		{name: "phone / UK national", text: "020 7946 0958", want: []hit{{"PHONE_NUMBER", 0, 13, ""}}},
		{name: "phone / UK mobile", text: "07700 900123", want: []hit{{"PHONE_NUMBER", 0, 12, ""}}},
		{name: "phone / bare digits with a context word", text: "phone: 4155550132", want: []hit{{"PHONE_NUMBER", 7, 10, ""}}},
		{name: "phone / bare digits without context", text: "order 4155550132"},
		{name: "phone / timestamp", text: "ts=1700000000"},
		{name: "phone / ISO date", text: "on 2024-01-15"},
		{name: "phone / ZIP+4", text: "CA 94107-1234"},
		{name: "phone / inside a hex id", text: "id 4155550132ab"},

		// CREDIT_CARD
		{name: "card / Visa grouped by spaces", text: "card 4111 1111 1111 1111 exp", want: []hit{{"CREDIT_CARD", 5, 19, ""}}},
		{name: "card / Visa grouped by dashes", text: "4111-1111-1111-1111", want: []hit{{"CREDIT_CARD", 0, 19, ""}}},
		{name: "card / Visa contiguous", text: "4111111111111111", want: []hit{{"CREDIT_CARD", 0, 16, ""}}},
		{name: "card / Amex", text: "amex 378282246310005", want: []hit{{"CREDIT_CARD", 5, 15, ""}}},
		{name: "card / Mastercard 2-series", text: "2223003122003222", want: []hit{{"CREDIT_CARD", 0, 16, ""}}},
		{name: "card / Luhn failure", text: "4111111111111112"},
		{name: "card / Luhn valid but no brand", text: "9111111111111111"},
		{name: "card / Visa with a wrong length", text: "41111111111111111"},
		{name: "card / inside an alphanumeric token", text: "x4111111111111111"},
		{name: "card / followed by letters", text: "4111111111111111abc"},
		{name: "card / part of a longer digit run", text: "004111111111111111"},
		{name: "card / mixed separators", text: "4111 1111-1111 1111"},

		// US_SSN
		{name: "ssn / dashed", text: "ssn 536-22-1234", want: []hit{{"US_SSN", 4, 11, ""}}},
		{name: "ssn / spaced", text: "536 22 1234", want: []hit{{"US_SSN", 0, 11, ""}}},
		{name: "ssn / nine digits with context", text: "Social Security: 536221234", want: []hit{{"US_SSN", 17, 9, ""}}},
		{name: "ssn / nine digits without context", text: "ref 536221234"},
		{name: "ssn / area 000", text: "000-22-1234"},
		{name: "ssn / area 666", text: "666-22-1234"},
		{name: "ssn / area 9xx", text: "912-22-1234"},
		{name: "ssn / group 00", text: "536-00-1234"},
		{name: "ssn / serial 0000", text: "536-22-0000"},
		{name: "ssn / Woolworth example", text: "078-05-1120"},
		{name: "ssn / 123-45-6789", text: "123-45-6789"},
		{name: "ssn / mixed separators", text: "536-22 1234"},

		// IBAN_CODE
		{name: "iban / DE contiguous", text: "IBAN DE89370400440532013000.", want: []hit{{"IBAN_CODE", 5, 22, ""}}},
		{name: "iban / DE grouped", text: "DE89 3704 0044 0532 0130 00", want: []hit{{"IBAN_CODE", 0, 27, ""}}},
		{name: "iban / GB grouped with letters", text: "to GB82 WEST 1234 5698 7654 32", want: []hit{{"IBAN_CODE", 3, 27, ""}}},
		{name: "iban / wrong check digit", text: "DE88370400440532013000"},
		{name: "iban / wrong length for the country", text: "DE8937040044053201300"},
		{name: "iban / followed by more alphanumerics", text: "DE89370400440532013000X"},
		{name: "iban / unknown country", text: "ZZ89370400440532013000"},

		// IP_ADDRESS
		{name: "ip / IPv4", text: "host 192.168.1.10 up", want: []hit{{"IP_ADDRESS", 5, 12, ""}}},
		{name: "ip / IPv4 at the end of a sentence", text: "from 10.0.0.1.", want: []hit{{"IP_ADDRESS", 5, 8, ""}}},
		{name: "ip / IPv4 with a port", text: "10.0.0.1:8080", want: []hit{{"IP_ADDRESS", 0, 8, ""}}},
		{name: "ip / version with three parts", text: "version 1.2.3"},
		{name: "ip / v-prefixed version", text: "release v1.2.3.4"},
		{name: "ip / five parts", text: "10.2.3.4.5"},
		{name: "ip / part over 255", text: "256.1.1.1"},
		{name: "ip / leading zero", text: "01.2.3.4"},
		{name: "ip / inside a dotted name", text: "lib.1.2.3.4"},
		{name: "ip / IPv6 compressed", text: "addr 2001:db8::8a2e:370:7334 end", want: []hit{{"IP_ADDRESS", 5, 23, ""}}},
		{name: "ip / IPv6 full", text: "2001:0db8:85a3:0000:0000:8a2e:0370:7334", want: []hit{{"IP_ADDRESS", 0, 39, ""}}},
		{name: "ip / IPv6 link-local", text: "via fe80::1", want: []hit{{"IP_ADDRESS", 4, 7, ""}}},
		{name: "ip / IPv6 loopback", text: "bind ::1", want: []hit{{"IP_ADDRESS", 5, 3, ""}}},
		{name: "ip / C++ scope", text: "std::vector<int> v;"},
		{name: "ip / C++ scope, capitalised", text: "Foo::Bar::baz()"},
		{name: "ip / MAC address", text: "mac 00:1a:2b:3c:4d:5e"},
		{name: "ip / time", text: "at 12:30:45"},
		{name: "ip / UUID", text: "550e8400-e29b-41d4-a716-446655440000"},

		// US_BANK_NUMBER
		{name: "bank / account number", text: "account number: 12345678901", want: []hit{{"US_BANK_NUMBER", 16, 11, ""}}},
		{name: "bank / acct", text: "acct 00012345", want: []hit{{"US_BANK_NUMBER", 5, 8, ""}}},
		{name: "bank / without context", text: "ref 12345678901"},
		{name: "bank / too short", text: "account number 1234567"},
	})
}

func TestDetectSecrets(t *testing.T) {
	s := newTestScanner(t, Options{})
	tests := []detectCase{
		{name: "aws-access-token / alone", text: awsKey, want: []hit{{"aws-access-token", 0, 20, ""}}},
		{name: "aws-access-token / ASIA", text: "id=ASIAZ7Q3XK5N2BVTRW4M;", want: []hit{{"aws-access-token", 3, 20, ""}}},
		{name: "aws-access-token / the docs' example key", text: "AKIAIOSFODNN7EXAMPLE"},
		{name: "aws-access-token / inside a longer run", text: "X" + awsKey},
		{name: "aws-access-token / followed by alphanumerics", text: awsKey + "Q"},
		{name: "aws-access-token / too short", text: awsKey[:19]},
		{name: "aws-access-token / lower case", text: strings.ToLower(awsKey)},
		{name: "aws-secret-access-key / after its name", text: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8rT2LkPq",
			want: []hit{{"aws-secret-access-key", 24, 40, ""}}},
		{name: "aws-secret-access-key / the docs' example secret", text: "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{name: "aws-secret-access-key / without its name", text: "value = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8rT2LkPq"},
		{name: "aws-secret-access-key / quoted, camel case", text: `"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8rT2LkPq"`,
			want: []hit{{"aws-secret-access-key", 20, 40, ""}}},

		{name: "github-pat", text: "token " + ghp + " end", want: []hit{{"github-pat", 6, 40, ""}}},
		{name: "github-oauth", text: gho, want: []hit{{"github-oauth", 0, 40, ""}}},
		{name: "github-app-token / ghu", text: ghu, want: []hit{{"github-app-token", 0, 40, ""}}},
		{name: "github-app-token / ghs", text: ghs, want: []hit{{"github-app-token", 0, 40, ""}}},
		{name: "github-refresh-token", text: "(" + ghr + ")", want: []hit{{"github-refresh-token", 1, 40, ""}}},
		{name: "github-pat / one body character changed", text: flip(ghp, 10)},
		{name: "github-pat / one checksum character changed", text: flip(ghp, 38)},
		{name: "github-pat / inside a longer run", text: "x" + ghp},
		{name: "github-pat / followed by an alphanumeric", text: ghp + "0"},
		{name: "github-pat / another prefix", text: "ghx_" + ghp[4:]},
		{name: "github-fine-grained-pat", text: "GH=" + fineGrain, want: []hit{{"github-fine-grained-pat", 3, 93, ""}}},
		{name: "github-fine-grained-pat / short second part", text: fineGrain[:92] + " "},
		{name: "gitlab-pat", text: "glpat-xY9zAb3Cd4Ef5Gh6Ij7K", want: []hit{{"gitlab-pat", 0, 26, ""}}},
		{name: "gitlab-pat / too short", text: "glpat-xY9zAb3Cd4Ef5Gh6Ij7"},
		{name: "slack-bot-token", text: "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", want: []hit{{"slack-bot-token", 0, 54, ""}}},
		{name: "slack-bot-token / 23 chars of secret", text: "xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvW"},
		{name: "slack-user-token", text: "xoxp-1234-5678-9012-0123456789abcdef0123456789abcdef", want: []hit{{"slack-user-token", 0, 52, ""}}},
		{name: "slack-legacy-token", text: "xoxs-1234-5678-AbCdEfGhIjKlMnOpQrSt", want: []hit{{"slack-legacy-token", 0, 35, ""}}},
		{name: "slack-legacy-token / one digit group", text: "xoxs-1234-AbCdEfGhIjKlMnOpQrSt"},
		{name: "slack-webhook-url", text: "POST https://hooks.slack.com/services/T0ABCDEF1/B0ABCDEF2/AbCdEfGhIjKlMnOpQrStUvWx",
			want: []hit{{"slack-webhook-url", 5, 77, ""}}},
		{name: "slack-webhook-url / lower-case team id", text: "https://hooks.slack.com/services/t0abcdef1/B0ABCDEF2/AbCdEfGhIjKlMnOpQrStUvWx"},
		{name: "stripe-access-token / secret", text: "sk_live_4eC39HqLyjWDarjtT1zdp7dc", want: []hit{{"stripe-access-token", 0, 32, ""}}},
		{name: "stripe-access-token / restricted", text: "k=rk_live_4eC39HqLyjWDarjtT1zdp7dc", want: []hit{{"stripe-access-token", 2, 32, ""}}},
		{name: "stripe-access-token / test key", text: "sk_test_4eC39HqLyjWDarjtT1zdp7dc"},
		{name: "stripe-access-token / publishable key", text: "pk_live_4eC39HqLyjWDarjtT1zdp7dc"},
		{name: "gcp-api-key", text: "key=AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI&x", want: []hit{{"gcp-api-key", 4, 39, ""}}},
		{name: "gcp-api-key / one short", text: "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsH"},
		{name: "openai-api-key", text: "OPENAI=" + openAI, want: []hit{{"openai-api-key", 7, 52, ""}}},
		{name: "openai-api-key / without the marker", text: "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGh"},
		{name: "anthropic-api-key", text: anthropic, want: []hit{{"anthropic-api-key", 0, 108, ""}}},
		{name: "anthropic-api-key / not ending in AA", text: anthropic[:106] + "AB"},
		{name: "npm-access-token", text: "//registry.npmjs.org/:_authToken=" + npm, want: []hit{{"npm-access-token", 33, 40, ""}}},
		{name: "npm-access-token / bad checksum", text: flip(npm, 20)},

		{name: "private-key / RSA block to its END line", text: "key: " + rsaKey + "\nbye", want: []hit{{"private-key", 5, len(rsaKey), ""}}},
		{name: "private-key / PKCS#8 without an END line", text: "-----BEGIN PRIVATE KEY-----\n" + pemBody,
			want: []hit{{"private-key", 0, 28 + len(pemBody), ""}}},
		{name: "private-key / PGP", text: "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: 1\n\n" + pemBody + "\n-----END PGP PRIVATE KEY BLOCK-----",
			want: []hit{{"private-key", 0, 38 + 12 + len(pemBody) + 36, ""}}},
		{name: "private-key / escaped newlines", text: `"-----BEGIN EC PRIVATE KEY-----\n` + pemBody + `\n-----END EC PRIVATE KEY-----"`,
			want: []hit{{"private-key", 1, 30 + 2 + len(pemBody) + 2 + 28, ""}}},
		{name: "private-key / no body", text: "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----"},
		{name: "private-key / short body", text: "-----BEGIN RSA PRIVATE KEY-----\n" + pemBody[:60] + "\n-----END RSA PRIVATE KEY-----"},
		{name: "private-key / public key", text: "-----BEGIN PUBLIC KEY-----\n" + pemBody + "\n-----END PUBLIC KEY-----"},
		{name: "private-key / certificate", text: "-----BEGIN CERTIFICATE-----\n" + pemBody + "\n-----END CERTIFICATE-----"},

		{name: "jwt", text: "Bearer " + jwtHS256, want: []hit{{"jwt", 7, len(jwtHS256), ""}}},
		{name: "jwt / alg none with an empty signature", text: jwtOf(`{"alg":"none"}`, `{"sub":"1234567890"}`, ""),
			want: []hit{{"jwt", 0, len(jwtOf(`{"alg":"none"}`, `{"sub":"1234567890"}`, "")), ""}}},
		{name: "jwt / header without alg", text: jwtOf(`{"typ":"JWT","kid":"k1"}`, `{"sub":"1234567890"}`, "SflKxwRJSMeKKF2QT4fw")},
		{name: "jwt / empty signature with a real alg", text: jwtOf(`{"alg":"HS256"}`, `{"sub":"1234567890"}`, "")},
		{name: "jwt / payload not an object", text: jwtOf(`{"alg":"HS256"}`, `["sub","1234567890"]`, "SflKxwRJSMeKKF2QT4fw")},
		{name: "jwt / four segments", text: jwtHS256 + ".eyJhbGciOiJIUzI1NiJ9"},
		{name: "jwt / an email in the payload is part of the token", text: jwtOf(`{"alg":"HS256"}`, `{"email":"alice@example.com"}`, "SflKxwRJSMeKKF2QT4fw"),
			want: []hit{{"jwt", 0, len(jwtOf(`{"alg":"HS256"}`, `{"email":"alice@example.com"}`, "SflKxwRJSMeKKF2QT4fw")), ""}}},

		{name: "database-url-password / postgres", text: "DATABASE_URL=postgres://app:Zr8vQ2nLx5@db.internal:5432/prod",
			want: []hit{{"database-url-password", 28, 10, ""}}},
		{name: "database-url-password / mongodb+srv", text: "mongodb+srv://u:p4ssW0rd!x@cluster0.example.net/db",
			want: []hit{{"database-url-password", 16, 10, ""}}},
		{name: "database-url-password / placeholder variable", text: "postgres://app:${DB_PASS}@db/prod"},
		{name: "database-url-password / placeholder word", text: "postgres://app:changeme@db/prod"},
		{name: "database-url-password / stars", text: "redis://:****@cache:6379"},
		{name: "database-url-password / another scheme", text: "https://app:Zr8vQ2nLx5@example.com/"},
		{name: "database-url-password / no password", text: "postgres://app@db/prod"},

		{name: "generic-api-key / env assignment", text: "DB_PASSWORD=Xk9mP2vL7qR4tN8w", want: []hit{{"generic-api-key", 12, 16, ""}}},
		{name: "generic-api-key / camel case in JSON text", text: `{"slackToken": "q8Zr2LmX5vN7pK3w"}`, want: []hit{{"generic-api-key", 16, 16, ""}}},
		{name: "generic-api-key / Go assignment", text: `apiKey := "Zq8Lm2Xv5Nr7Kp3W"`, want: []hit{{"generic-api-key", 11, 16, ""}}},
		{name: "generic-api-key / short value", text: `password = "hunter2"`},
		{name: "generic-api-key / no digit", text: `api_key = "your-api-key-here"`},
		{name: "generic-api-key / placeholder", text: "password=${DB_PASSWORD}"},
		{name: "generic-api-key / angle placeholder", text: "token: <token>"},
		{name: "generic-api-key / a number", text: "progressToken: 123456789012"},
		{name: "generic-api-key / a setting", text: "password_min_length: 12"},
		{name: "generic-api-key / low entropy", text: "secret=aaaaaaaaaaaa1111"},
		{name: "generic-api-key / a specific secret wins", text: "GITHUB_TOKEN=" + ghp, want: []hit{{"github-pat", 13, 40, ""}}},
	}
	runDetect(t, s, tests)
}

func TestNewScannerDetectors(t *testing.T) {
	text := []byte("mail alice@example.com key " + awsKey)
	tests := []struct {
		name      string
		detectors []string
		want      []hit
		err       string
	}{
		{name: "all by default", want: []hit{{"EMAIL_ADDRESS", 5, 17, ""}, {"aws-access-token", 27, 20, ""}}},
		{name: "only email", detectors: []string{"EMAIL_ADDRESS"}, want: []hit{{"EMAIL_ADDRESS", 5, 17, ""}}},
		{name: "only aws", detectors: []string{"aws-access-token"}, want: []hit{{"aws-access-token", 27, 20, ""}}},
		{name: "neither", detectors: []string{"jwt", "US_SSN"}, want: []hit{}},
		{name: "unknown id", detectors: []string{"EMAIL_ADDRESS", "no-such-detector"}, err: `unknown DLP detector "no-such-detector"`},
		{name: "a category is not a detector id", detectors: []string{"pii"}, err: `unknown DLP detector "pii"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewScanner(Options{Detectors: tt.detectors})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("NewScanner: %v, want an error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := hitsOf(s.Detect(text)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("restricted to the generic detector, an AWS secret is generic", func(t *testing.T) {
		s := newTestScanner(t, Options{Detectors: []string{"generic-api-key"}})
		got := hitsOf(s.Detect([]byte("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8rT2LkPq")))
		if want := []hit{{"generic-api-key", 22, 40, ""}}; !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("the anthropic anchor with only openai enabled", func(t *testing.T) {
		s := newTestScanner(t, Options{Detectors: []string{"openai-api-key"}})
		if got := s.Detect([]byte(anthropic)); len(got) != 0 {
			t.Errorf("got %v", hitsOf(got))
		}
		if got := hitsOf(s.Detect([]byte(openAI))); !reflect.DeepEqual(got, []hit{{"openai-api-key", 0, 52, ""}}) {
			t.Errorf("got %v", got)
		}
	})
}

func TestDetectorsList(t *testing.T) {
	ds := Detectors()
	if len(ds) != int(numDetectors) {
		t.Fatalf("%d detectors, want %d", len(ds), numDetectors)
	}
	seen := map[string]bool{}
	for _, d := range ds {
		if d.ID == "" || d.Description == "" || d.Category != CategoryPII && d.Category != CategorySecret {
			t.Errorf("detector %+v", d)
		}
		if seen[d.ID] {
			t.Errorf("duplicate id %q", d.ID)
		}
		seen[d.ID] = true
		if _, ok := detectorByID(d.ID); !ok {
			t.Errorf("detectorByID(%q) not found", d.ID)
		}
	}
}

func TestDetectEncoded(t *testing.T) {
	inner := "key: " + awsKey + " ~~~" // encodes with '+' (std) / '-' (url) and padding
	std := base64.StdEncoding.EncodeToString([]byte(inner))
	rawStd := base64.RawStdEncoding.EncodeToString([]byte(inner))
	url := base64.URLEncoding.EncodeToString([]byte(inner))
	rawURL := base64.RawURLEncoding.EncodeToString([]byte(inner))
	if !strings.ContainsAny(std, "+/") || !strings.HasSuffix(std, "=") || !strings.ContainsAny(rawURL, "-_") || !strings.HasSuffix(url, "=") {
		t.Fatalf("fixture does not exercise both alphabets and padding: %s %s", std, url)
	}
	hexed := hex.EncodeToString([]byte(inner))
	nested := base64.StdEncoding.EncodeToString([]byte(std))
	emailB64 := base64.StdEncoding.EncodeToString([]byte("send to alice@example.com ok"))

	def := newTestScanner(t, Options{})
	depth1 := newTestScanner(t, Options{MaxDecodeDepth: 1})
	off := newTestScanner(t, Options{MaxDecodeDepth: -1})

	tests := []struct {
		name string
		s    *Scanner
		text string
		want []hit
	}{
		{name: "base64 std padded", s: def, text: "blob " + std + " end", want: []hit{{"aws-access-token", 5, len(std), "base64"}}},
		{name: "base64 std unpadded", s: def, text: "blob " + rawStd, want: []hit{{"aws-access-token", 5, len(rawStd), "base64"}}},
		{name: "base64 url padded", s: def, text: `"` + url + `"`, want: []hit{{"aws-access-token", 1, len(url), "base64"}}},
		{name: "base64 url unpadded", s: def, text: rawURL, want: []hit{{"aws-access-token", 0, len(rawURL), "base64"}}},
		{name: "base64 with PII inside", s: def, text: "x " + emailB64, want: []hit{{"EMAIL_ADDRESS", 2, len(emailB64), "base64"}}},
		{name: "base64 after a name and =", s: def, text: "DATA=" + std, want: []hit{{"aws-access-token", 5, len(std), "base64"}}},
		{name: "base64 in a query string", s: def, text: "https://x.test/?d=" + std + "&y=1", want: []hit{{"aws-access-token", 18, len(std), "base64"}}},
		{name: "hex", s: def, text: "hex:" + hexed, want: []hit{{"aws-access-token", 4, len(hexed), "hex"}}},
		{name: "hex in upper case", s: def, text: strings.ToUpper(hexed), want: []hit{{"aws-access-token", 0, len(hexed), "hex"}}},
		{name: "percent-encoded secret", s: def, text: "q=AKIA%5A7Q3XK5N2BVTRW4M&x=1", want: []hit{{"aws-access-token", 2, 22, "url"}}},
		{name: "percent-encoded email", s: def, text: "mailto:alice%40example.com", want: []hit{{"EMAIL_ADDRESS", 7, 19, "url"}}},
		{name: "percent escapes elsewhere do not repeat a clear match", s: def, text: "a%20b " + awsKey, want: []hit{{"aws-access-token", 6, 20, ""}}},
		{name: "base64 in base64 at depth 2", s: def, text: nested, want: []hit{{"aws-access-token", 0, len(nested), "base64+base64"}}},
		{name: "base64 in base64 not at depth 1", s: depth1, text: nested},
		{name: "base64 at depth 1", s: depth1, text: std, want: []hit{{"aws-access-token", 0, len(std), "base64"}}},
		{name: "decoding off", s: off, text: std},
		{name: "hex with decoding off", s: off, text: hexed},
		{name: "percent with decoding off", s: off, text: "q=AKIA%5A7Q3XK5N2BVTRW4M"},
		{name: "base64 of ordinary text", s: def, text: base64.StdEncoding.EncodeToString([]byte("the quick brown fox jumps over the lazy dog"))},
		{name: "base64 of binary", s: def, text: base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 3, 0xff, 0xfe, 'A', 'K', 'I', 'A', 0, 0, 0, 0, 0, 0, 0, 0})},
		{name: "a run too short to decode", s: def, text: base64.StdEncoding.EncodeToString([]byte("a@example.io"))},
		{name: "mixed alphabets are not decoded", s: def, text: std[:10] + "-" + std[10:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := tt.s.Scan([]byte(tt.text))
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			got, want := hitsOf(ms), tt.want
			if want == nil {
				want = []hit{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Scan(%q)\n got %v\nwant %v", tt.text, got, want)
			}
		})
	}
}

func TestScanLimit(t *testing.T) {
	std := base64.StdEncoding.EncodeToString([]byte("key: " + awsKey + " ~~~"))
	s := newTestScanner(t, Options{MaxDecodedBytes: 16})
	text := []byte(ghp + " " + std)
	ms, err := s.Scan(text)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("Scan: %v, want an error wrapping ErrLimit", err)
	}
	if !strings.Contains(err.Error(), "more than 16 bytes decoded") {
		t.Errorf("error %q does not say the limit", err)
	}
	// What was found before the limit is returned.
	want := []hit{{"github-pat", 0, 40, ""}}
	if got := hitsOf(ms); !reflect.DeepEqual(got, want) {
		t.Errorf("matches %v, want %v", got, want)
	}
	// Detect swallows the error but returns the same matches.
	if got := hitsOf(s.Detect(text)); !reflect.DeepEqual(got, want) {
		t.Errorf("Detect: %v, want %v", got, want)
	}
	// The matches returned with the error are the caller's: later scans
	// (which reuse the scanner's pooled memory) do not change them.
	for range 20 {
		s.Detect([]byte("mail alice@example.com and bob@example.org and carol@example.net"))
	}
	if got := hitsOf(ms); !reflect.DeepEqual(got, want) {
		t.Errorf("matches changed by a later scan: %v", got)
	}
	// Within the budget, the same scanner decodes.
	big := newTestScanner(t, Options{MaxDecodedBytes: 1 << 10})
	if ms, err := big.Scan(text); err != nil || len(ms) != 2 {
		t.Errorf("Scan within the budget: %v, %v", hitsOf(ms), err)
	}
	// URL decoding spends from the same budget.
	if _, err := s.Scan([]byte("x=%41%41%41%41%41%41%41%41%41%41%41")); !errors.Is(err, ErrLimit) {
		t.Errorf("URL decoding over budget: %v", err)
	}
}

func TestResolve(t *testing.T) {
	m := func(d detector, off, n int, enc string) Match {
		return Match{Detector: detectors[d].id, det: d, Offset: off, Length: n, Encoding: enc}
	}
	tests := []struct {
		name string
		in   []Match
		want []Match
	}{
		{name: "empty", in: nil, want: nil},
		{name: "sorted by offset", in: []Match{m(detEmail, 30, 5, ""), m(detPhone, 0, 10, "")},
			want: []Match{m(detPhone, 0, 10, ""), m(detEmail, 30, 5, "")}},
		{name: "exact duplicates dropped", in: []Match{m(detAWSSecret, 4, 40, ""), m(detAWSSecret, 4, 40, ""), m(detAWSSecret, 4, 40, "")},
			want: []Match{m(detAWSSecret, 4, 40, "")}},
		{name: "same span, another encoding: the clear one kept", in: []Match{m(detEmail, 0, 10, "url"), m(detEmail, 0, 10, "")},
			want: []Match{m(detEmail, 0, 10, "")}},
		{name: "same span, another detector kept", in: []Match{m(detPhone, 0, 10, ""), m(detBank, 0, 10, "")},
			want: []Match{m(detPhone, 0, 10, ""), m(detBank, 0, 10, "")}},
		{name: "generic on the same span as a specific secret dropped", in: []Match{m(detGeneric, 5, 40, ""), m(detGitHubPAT, 5, 40, "")},
			want: []Match{m(detGitHubPAT, 5, 40, "")}},
		{name: "generic partly overlapping dropped", in: []Match{m(detGeneric, 0, 10, ""), m(detStripe, 5, 32, "")},
			want: []Match{m(detStripe, 5, 32, "")}},
		{name: "generic adjacent kept", in: []Match{m(detGeneric, 0, 5, ""), m(detStripe, 5, 32, "")},
			want: []Match{m(detGeneric, 0, 5, ""), m(detStripe, 5, 32, "")}},
		{name: "encoded match inside a JWT dropped", in: []Match{m(detJWT, 0, 100, ""), m(detEmail, 37, 40, "base64")},
			want: []Match{m(detJWT, 0, 100, "")}},
		{name: "PII inside a secret dropped", in: []Match{m(detPhone, 10, 10, ""), m(detGitHubPAT, 0, 40, "")},
			want: []Match{m(detGitHubPAT, 0, 40, "")}},
		{name: "an encoded secret is not dominant", in: []Match{m(detAWSAccess, 0, 60, "base64"), m(detEmail, 10, 5, "")},
			want: []Match{m(detAWSAccess, 0, 60, "base64"), m(detEmail, 10, 5, "")}},
		{name: "overlapping specific secrets both kept", in: []Match{m(detAWSAccess, 10, 20, ""), m(detPrivateKey, 0, 100, "")},
			want: []Match{m(detPrivateKey, 0, 100, ""), m(detAWSAccess, 10, 20, "")}},
		{name: "a long secret still covers after a short one", in: []Match{m(detPrivateKey, 0, 100, ""), m(detAWSAccess, 10, 20, ""), m(detEmail, 50, 10, "")},
			want: []Match{m(detPrivateKey, 0, 100, ""), m(detAWSAccess, 10, 20, "")}},
		{name: "after the last secret kept", in: []Match{m(detAWSAccess, 10, 20, ""), m(detEmail, 30, 10, "")},
			want: []Match{m(detAWSAccess, 10, 20, ""), m(detEmail, 30, 10, "")}},
		{name: "PII overlapping PII kept", in: []Match{m(detPhone, 0, 12, ""), m(detCard, 5, 16, "")},
			want: []Match{m(detPhone, 0, 12, ""), m(detCard, 5, 16, "")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(slices.Clone(tt.in))
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("resolve\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}

	t.Run("through the scanner / duplicates from two anchors", func(t *testing.T) {
		// "secret" and "access_key" both anchor the same assignment.
		s := newTestScanner(t, Options{})
		got := hitsOf(s.Detect([]byte("secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8rT2LkPq")))
		if want := []hit{{"aws-secret-access-key", 18, 40, ""}}; !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}

func TestDetectConcurrent(t *testing.T) {
	s := newTestScanner(t, Options{})
	texts := []string{"mail alice@example.com now", "token " + ghp + " end", "card 4111 1111 1111 1111 exp", base64.StdEncoding.EncodeToString([]byte("key: " + awsKey + " ~~~"))}
	want := make([][]hit, len(texts))
	for i, tx := range texts {
		want[i] = hitsOf(s.Detect([]byte(tx)))
		if len(want[i]) != 1 {
			t.Fatalf("%q: %v", tx, want[i])
		}
	}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for k := range 50 {
				i := (g + k) % len(texts)
				if got := hitsOf(s.Detect([]byte(texts[i]))); !reflect.DeepEqual(got, want[i]) {
					done <- fmt.Errorf("%q: %v, want %v", texts[i], got, want[i])
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

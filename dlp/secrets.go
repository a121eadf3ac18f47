package dlp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"math"
)

// kwHandler validates a candidate around an anchor found at text[start:end].
type kwHandler func(st *state, text []byte, start, end int)

// anchor is a prefix a secret starts with (matched case-insensitively;
// the handler checks the case).
type anchor struct {
	word string
	fn   kwHandler
}

// anchors are the secret detectors' prefixes, by their first byte
// (lower-cased). A secret starts a token (no letter or digit before it),
// so the token pass looks them up once per token, not once per byte: the
// table is the scanner's prefilter, and a validator runs only behind one.
var anchors = func() (t [256][]anchor) {
	for _, a := range []anchor{
		{"akia", awsAccessKey}, {"asia", awsAccessKey}, {"abia", awsAccessKey}, {"acca", awsAccessKey},
		{"aiza", gcpKey},
		{"ghp_", githubToken}, {"gho_", githubToken}, {"ghu_", githubToken}, {"ghs_", githubToken}, {"ghr_", githubToken},
		{"github_pat_", githubFineGrained},
		{"glpat-", gitlabToken},
		{"xoxb-", slackToken}, {"xoxp-", slackToken}, {"xoxa-", slackToken}, {"xoxo-", slackToken}, {"xoxr-", slackToken}, {"xoxs-", slackToken},
		{"hooks.slack.com/", slackWebhook},
		{"sk_live_", stripeKey}, {"rk_live_", stripeKey},
		{"sk-", skKey},
		{"npm_", npmToken},
		{"eyj", jwtToken},
	} {
		t[a.word[0]] = append(t[a.word[0]], a)
	}
	return t
}()

// anchorPairs holds the first two bytes of every anchor as the secret
// writes them (AKIA, AIza, ghp_, eyJ...): bit c1-'A' of anchorPairs[c0].
// Most tokens are dismissed by this one lookup in a table that stays in
// the L1 cache; the validators check the rest of the case.
var anchorPairs = func() (t [256]uint64) {
	for _, p := range []string{"AK", "AS", "AB", "AC", "AI", "gh", "gi", "gl", "xo", "ho", "sk", "rk", "np", "ey"} {
		t[p[0]] |= 1 << (p[1] - 'A')
	}
	return t
}()

// anchorPair reports whether a token starting with c0, c1 may be a secret.
func anchorPair(c0, c1 byte) bool {
	return c1 >= 'A' && c1 <= 'z' && anchorPairs[c0]&(1<<(c1-'A')) != 0
}

// anchored runs the validators of the anchors the token at text[i] starts
// with.
func (st *state) anchored(text []byte, i int) {
	for _, a := range anchors[lower(text[i])] {
		if hasPrefixFold(text[i:], a.word) {
			a.fn(st, text, i, i+len(a.word))
		}
	}
}

// hasPrefixFold reports whether b starts with the lower-case word,
// ignoring ASCII case.
func hasPrefixFold(b []byte, word string) bool {
	if len(b) < len(word) {
		return false
	}
	for k := 0; k < len(word); k++ {
		if lower(b[k]) != word[k] {
			return false
		}
	}
	return true
}

// keyed checks a string value whose member name says it is a secret.
func (st *state) keyed(text []byte) {
	if len(st.key) > 0 && st.s.enabled[detGeneric] && secretName(st.key) && genericValue(text) {
		st.emit(detGeneric, 0, len(text), 0.7)
	}
}

// Byte classes.
var (
	isAlnum      = class(func(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' })
	isB64        = class(func(b byte) bool { return isAlnum[b] || b == '+' || b == '/' })
	isB64URL     = class(func(b byte) bool { return isAlnum[b] || b == '_' || b == '-' })
	isHex        = class(func(b byte) bool { return b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b >= 'A' && b <= 'F' })
	isIdent      = class(func(b byte) bool { return isAlnum[b] || b == '_' || b == '-' || b == '.' })
	isBase32U    = class(func(b byte) bool { return b >= 'A' && b <= 'Z' || b >= '2' && b <= '7' })
	isUpperDigit = class(func(b byte) bool { return b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' })
)

// class returns the table of the bytes in.
func class(in func(b byte) bool) (t [256]bool) {
	for c := range t {
		t[c] = in(byte(c))
	}
	return t
}

// before reports whether the byte before i is in set (false at the start).
func before(text []byte, i int, set *[256]bool) bool { return i > 0 && set[text[i-1]] }

// at reports whether the byte at i is in set (false at the end).
func at(text []byte, i int, set *[256]bool) bool { return i < len(text) && set[text[i]] }

// run returns the end of the run of set bytes starting at i, at most max long.
func run(text []byte, i int, set *[256]bool, max int) int {
	j := i
	for j < len(text) && j-i < max && set[text[j]] {
		j++
	}
	return j
}

func awsAccessKey(st *state, text []byte, start, end int) {
	p := text[start:end]
	if !(bytes.Equal(p, []byte("AKIA")) || bytes.Equal(p, []byte("ASIA")) || bytes.Equal(p, []byte("ABIA")) || bytes.Equal(p, []byte("ACCA"))) {
		return
	}
	if before(text, start, &isAlnum) {
		return
	}
	e := run(text, end, &isBase32U, 17)
	if e-end != 16 || at(text, e, &isAlnum) || bytes.Contains(text[start:e], []byte("EXAMPLE")) {
		return
	}
	st.emit(detAWSAccess, start, e-start, 0.95)
}

// base62 is the alphabet of GitHub's and npm's token checksums.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// checksum62 reports whether the last 6 bytes of tok are the base62 CRC-32
// of the bytes before them, as GitHub and npm tokens carry.
func checksum62(tok []byte) bool {
	if len(tok) < 7 {
		return false
	}
	sum := crc32.ChecksumIEEE(tok[:len(tok)-6])
	var enc [6]byte
	for i := 5; i >= 0; i-- {
		enc[i] = base62[sum%62]
		sum /= 62
	}
	return sum == 0 && bytes.Equal(enc[:], tok[len(tok)-6:])
}

func githubToken(st *state, text []byte, start, end int) {
	p := text[start:end]
	if p[0] != 'g' || p[1] != 'h' || before(text, start, &isAlnum) {
		return
	}
	var d detector
	switch p[2] {
	case 'p':
		d = detGitHubPAT
	case 'o':
		d = detGitHubOAuth
	case 'u', 's':
		d = detGitHubApp
	case 'r':
		d = detGitHubRefresh
	default:
		return
	}
	e := run(text, end, &isAlnum, 37)
	if e-end != 36 || !checksum62(text[end:e]) {
		return
	}
	st.emit(d, start, e-start, 0.99)
}

func githubFineGrained(st *state, text []byte, start, end int) {
	if !bytes.Equal(text[start:end], []byte("github_pat_")) || before(text, start, &isAlnum) {
		return
	}
	a := run(text, end, &isAlnum, 23)
	if a-end != 22 || a >= len(text) || text[a] != '_' {
		return
	}
	b := run(text, a+1, &isAlnum, 60)
	if b-(a+1) != 59 {
		return
	}
	st.emit(detGitHubFineGrained, start, b-start, 0.97)
}

func gitlabToken(st *state, text []byte, start, end int) {
	if !bytes.Equal(text[start:end], []byte("glpat-")) || before(text, start, &isAlnum) {
		return
	}
	e := run(text, end, &isB64URL, 65)
	if n := e - end; n < 20 || n > 64 {
		return
	}
	st.emit(detGitLab, start, e-start, 0.95)
}

func digitsRun(text []byte, i, min, max int) int {
	j := i
	for j < len(text) && j-i < max && text[j] >= '0' && text[j] <= '9' {
		j++
	}
	if j-i < min || j < len(text) && text[j] >= '0' && text[j] <= '9' {
		return -1
	}
	return j
}

func slackToken(st *state, text []byte, start, end int) {
	p := text[start:end]
	if p[0] != 'x' || p[1] != 'o' || p[2] != 'x' || before(text, start, &isAlnum) {
		return
	}
	i := end
	switch p[3] {
	case 'b':
		a := digitsRun(text, i, 10, 13)
		if a < 0 || a >= len(text) || text[a] != '-' {
			return
		}
		b := digitsRun(text, a+1, 10, 13)
		if b < 0 || b >= len(text) || text[b] != '-' {
			return
		}
		e := run(text, b+1, &isAlnum, 25)
		if e-(b+1) != 24 || at(text, e, &isAlnum) {
			return
		}
		st.emit(detSlackBot, start, e-start, 0.97)
	case 'p':
		for k := 0; k < 3; k++ {
			a := digitsRun(text, i, 1, 20)
			if a < 0 || a >= len(text) || text[a] != '-' {
				return
			}
			i = a + 1
		}
		e := run(text, i, &isHex, 33)
		if e-i != 32 || at(text, e, &isAlnum) {
			return
		}
		st.emit(detSlackUser, start, e-start, 0.97)
	default:
		// xox[aors]-digits-digits(-digits)?-secret
		groups := 0
		for groups < 3 {
			a := digitsRun(text, i, 1, 20)
			if a < 0 || a >= len(text) || text[a] != '-' {
				break
			}
			i, groups = a+1, groups+1
		}
		if groups < 2 {
			return
		}
		e := run(text, i, &isAlnum, 200)
		if e-i < 20 || at(text, e, &isAlnum) {
			return
		}
		st.emit(detSlackLegacy, start, e-start, 0.9)
	}
}

func slackWebhook(st *state, text []byte, start, end int) {
	if !bytes.Equal(text[start:end], []byte("hooks.slack.com/")) {
		return
	}
	s := start
	if s >= 8 && bytes.Equal(text[s-8:s], []byte("https://")) {
		s -= 8
	}
	i := end
	switch {
	case bytes.HasPrefix(text[i:], []byte("services/")):
		i += len("services/")
	case bytes.HasPrefix(text[i:], []byte("workflows/")):
		i += len("workflows/")
	default:
		return
	}
	for _, lead := range []byte{'T', 'B'} {
		if i >= len(text) || text[i] != lead {
			return
		}
		e := run(text, i+1, &isUpperDigit, 13)
		if n := e - (i + 1); n < 8 || n > 12 || e >= len(text) || text[e] != '/' {
			return
		}
		i = e + 1
	}
	e := run(text, i, &isAlnum, 25)
	if e-i != 24 || at(text, e, &isAlnum) {
		return
	}
	st.emit(detSlackWebhook, s, e-s, 0.98)
}

func stripeKey(st *state, text []byte, start, end int) {
	p := text[start:end]
	if !(bytes.Equal(p, []byte("sk_live_")) || bytes.Equal(p, []byte("rk_live_"))) || before(text, start, &isAlnum) {
		return
	}
	e := run(text, end, &isAlnum, 100)
	if n := e - end; n < 24 || n > 99 || at(text, e, &isAlnum) {
		return
	}
	st.emit(detStripe, start, e-start, 0.97)
}

func gcpKey(st *state, text []byte, start, end int) {
	if !bytes.Equal(text[start:end], []byte("AIza")) || before(text, start, &isB64URL) {
		return
	}
	e := run(text, end, &isB64URL, 36)
	if e-end != 35 || at(text, e, &isB64URL) {
		return
	}
	st.emit(detGCP, start, e-start, 0.95)
}

// skKey handles sk-: Anthropic (sk-ant-api03-, sk-ant-admin01-) and
// OpenAI keys (with the T3BlbkFJ marker, base64 of "OpenAI").
func skKey(st *state, text []byte, start, end int) {
	if text[start] != 's' || text[start+1] != 'k' || before(text, start, &isB64URL) {
		return
	}
	rest := text[end:]
	for _, pre := range []string{"ant-api03-", "ant-admin01-"} {
		if bytes.HasPrefix(rest, []byte(pre)) {
			if !st.s.enabled[detAnthropic] {
				return
			}
			i := end + len(pre)
			e := run(text, i, &isB64URL, 96)
			if e-i != 95 || text[e-2] != 'A' || text[e-1] != 'A' || at(text, e, &isB64URL) {
				return
			}
			st.emit(detAnthropic, start, e-start, 0.98)
			return
		}
	}
	e := run(text, end, &isB64URL, 221)
	if n := e - start; n < 40 || n > 220 || at(text, e, &isB64URL) {
		return
	}
	if !bytes.Contains(text[end:e], []byte("T3BlbkFJ")) {
		return
	}
	st.emit(detOpenAI, start, e-start, 0.97)
}

func npmToken(st *state, text []byte, start, end int) {
	if !bytes.Equal(text[start:end], []byte("npm_")) || before(text, start, &isAlnum) {
		return
	}
	e := run(text, end, &isAlnum, 37)
	if e-end != 36 || !checksum62(text[end:e]) {
		return
	}
	st.emit(detNPM, start, e-start, 0.99)
}

var pemTypes = []string{"RSA PRIVATE KEY-----", "EC PRIVATE KEY-----", "DSA PRIVATE KEY-----", "OPENSSH PRIVATE KEY-----",
	"ENCRYPTED PRIVATE KEY-----", "PRIVATE KEY-----", "PGP PRIVATE KEY BLOCK-----"}

// privateKey finds a PEM private key block: its BEGIN line and at least 64
// base64 characters of body. The match runs to the END line's closing
// dashes (or where the body stops).
func privateKey(st *state, text []byte, start, end int) {
	if !bytes.Equal(text[start:end], []byte("-----BEGIN ")) {
		return
	}
	i := -1
	for _, t := range pemTypes {
		if bytes.HasPrefix(text[end:], []byte(t)) {
			i = end + len(t)
			break
		}
	}
	if i < 0 {
		return
	}
	b64 := 0
	j := i
scan:
	for j < len(text) && j-i < 64<<10 {
		c := text[j]
		switch {
		case isB64[c] || c == '=':
			b64++
		case c == '\n' || c == '\r' || c == ' ' || c == '\t':
		case c == '\\' && j+1 < len(text) && (text[j+1] == 'n' || text[j+1] == 'r'):
			j++ // an escaped newline in JSON text
		case c == ':' || c == ',':
			// PEM headers (Proc-Type: 4,ENCRYPTED) and PGP armor headers.
		case c == '-':
			if bytes.HasPrefix(text[j:], []byte("-----END ")) {
				if k := bytes.Index(text[j+9:min(len(text), j+9+40)], []byte("-----")); k >= 0 {
					j += 9 + k + 5
				}
			}
			break scan
		default:
			break scan
		}
		j++
	}
	if b64 < 64 {
		return
	}
	st.emit(detPrivateKey, start, j-start, 0.99)
}

// jwtToken checks a JWT: three base64url segments, a header that decodes
// to a JSON object with "alg", a payload that decodes to a JSON object.
func jwtToken(st *state, text []byte, start, end int) {
	if text[start+2] != 'J' || text[start] != 'e' || text[start+1] != 'y' || before(text, start, &isB64URL) {
		return
	}
	h := run(text, start, &isB64URL, 4096)
	if h-start < 10 || h >= len(text) || text[h] != '.' {
		return
	}
	p := run(text, h+1, &isB64URL, 64<<10)
	if p-(h+1) < 10 || p >= len(text) || text[p] != '.' {
		return
	}
	sEnd := run(text, p+1, &isB64URL, 4096)
	if at(text, sEnd, &isB64URL) || sEnd < len(text) && text[sEnd] == '.' && at(text, sEnd+1, &isB64URL) {
		return // four segments: not a JWS
	}
	var hdr struct {
		Alg *string `json:"alg"`
	}
	hb, err := base64.RawURLEncoding.DecodeString(string(text[start:h]))
	if err != nil || json.Unmarshal(hb, &hdr) != nil || hdr.Alg == nil {
		return
	}
	if sEnd == p+1 && *hdr.Alg != "none" {
		return
	}
	pb, err := base64.RawURLEncoding.DecodeString(string(text[h+1 : p]))
	if err != nil || len(pb) == 0 || pb[0] != '{' || !json.Valid(pb) {
		return
	}
	st.emit(detJWT, start, sEnd-start, 0.97)
}

var dbSchemes = []string{"postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss",
	"amqp", "amqps", "mssql", "sqlserver", "clickhouse", "cockroachdb"}

var placeholderPasswords = []string{"password", "pass", "passwd", "secret", "changeme", "example"}

// databaseURL finds the password of scheme://user:password@host.
func databaseURL(st *state, text []byte, start, end int) {
	s := start
	for s > 0 && (isAlnum[text[s-1]] || text[s-1] == '+') {
		s--
	}
	scheme := text[s:start] // jdbc:postgresql:// reads as postgresql
	known := false
	for _, k := range dbSchemes {
		if len(scheme) == len(k) && hasPrefixFold(scheme, k) {
			known = true
			break
		}
	}
	if !known {
		return
	}
	// userinfo runs to '@' within the authority.
	colon, at := -1, -1
	for i := end; i < len(text) && i-end < 512; i++ {
		c := text[i]
		if c == '@' {
			at = i // the last '@' of the authority ends the userinfo
			continue
		}
		if c == '/' || c == '?' || c == '#' || c == ' ' || c == '"' || c == '\'' || c == '\n' || c == '\t' || c == '\\' || c == '<' || c == '>' {
			break
		}
		if c == ':' && colon < 0 && at < 0 {
			colon = i
		}
	}
	if colon < 0 || at < 0 || colon > at || colon == end {
		return
	}
	pw := text[colon+1 : at]
	if len(pw) == 0 || placeholder(pw) {
		return
	}
	st.emit(detDatabaseURL, colon+1, len(pw), 0.95)
}

// testKey reports whether v is a documentation or test-mode key that
// its own detector rejects on purpose: AWS's EXAMPLE keys, Stripe test
// and publishable keys.
func testKey(v []byte) bool {
	if bytes.Contains(v, []byte("EXAMPLE")) {
		return true
	}
	for _, p := range [...]string{"sk_test_", "rk_test_", "pk_test_", "pk_live_"} {
		if bytes.HasPrefix(v, []byte(p)) {
			return true
		}
	}
	return false
}

// placeholder reports whether v is a stand-in, not a value: ${VAR},
// <password>, {{ .x }}, %(x)s, ***, xxx, or a word like "changeme".
func placeholder(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	switch {
	case v[0] == '$' || v[0] == '<' || bytes.HasPrefix(v, []byte("{{")) || bytes.HasPrefix(v, []byte("%(")):
		return true
	}
	only := func(c byte) bool {
		for _, b := range v {
			if b != c {
				return false
			}
		}
		return true
	}
	if only('*') || only('x') || only('X') {
		return true
	}
	lv := bytes.ToLower(v)
	for _, p := range placeholderPasswords {
		if string(lv) == p {
			return true
		}
	}
	return false
}

// assignment checks for a secret assigned at text[op] ('=' or ':'):
// name, optional quote and spaces, the operator (=, :, :=, =>), spaces,
// an optional quote, then a value. The value's first 12 bytes are looked
// at first: most assignments hold short values, and are dismissed before
// their name is read; then the name, and only under a secret's name the
// rest of the value (so that a long run of ':' or '=' costs little).
func (st *state) assignment(text []byte, op int) {
	i := op + 1
	if i < len(text) && (text[i] == '=' || text[i] == '>') {
		i++ // := and =>; a lone = after : or = is skipped below
	}
	for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
		i++
	}
	if i+1 < len(text) && text[i] == '\\' && text[i+1] == '"' {
		i += 2 // an escaped quote in JSON text
	} else if i < len(text) && (text[i] == '"' || text[i] == '\'' || text[i] == '`') {
		i++
	}
	vs := i
	for i < len(text) && i-vs < 12 && valueByte(text[i]) {
		i++
	}
	if i-vs < 12 {
		return // short: not key-shaped
	}
	// The name before the operator.
	ne := op
	if ne > 0 && text[op] == '=' && text[ne-1] == ':' {
		ne-- // :=
	}
	for ne > 0 && (text[ne-1] == ' ' || text[ne-1] == '\t') {
		ne--
	}
	if ne > 0 && (text[ne-1] == '"' || text[ne-1] == '\'') {
		ne--
		if ne > 0 && text[ne-1] == '\\' {
			ne--
		}
	}
	ns := ne
	for ns > 0 && ne-ns < 64 && isIdent[text[ns-1]] {
		ns--
	}
	name := text[ns:ne]
	if len(name) < 3 || !secretName(name) {
		return
	}
	for i < len(text) && i-vs <= 128 && valueByte(text[i]) {
		i++
	}
	v := text[vs:i]
	if i < len(text) && valueByte(text[i]) {
		return // longer than 128: not key-shaped
	}
	if isAWSSecretName(name) && st.s.enabled[detAWSSecret] {
		if len(v) == 40 && allIn(v, &isB64) && !bytes.Contains(v, []byte("EXAMPLE")) && entropy(v) >= 3.5 {
			st.emit(detAWSSecret, vs, len(v), 0.95)
			return
		}
	}
	if genericValue(v) {
		st.emit(detGeneric, vs, len(v), 0.7)
	}
}

// isValue holds the bytes an assigned value can hold: visible ASCII but
// quotes, separators and brackets.
var isValue = class(func(c byte) bool {
	return c > ' ' && c < 0x7f && c != '"' && c != '\'' && c != '`' && c != ',' && c != ';' && c != '\\' && c != '}' && c != ')' && c != ']' && c != '<' && c != '>'
})

// valueByte reports whether c can be part of an assigned value.
func valueByte(c byte) bool { return isValue[c] }

func allIn(v []byte, set *[256]bool) bool {
	for _, c := range v {
		if !set[c] {
			return false
		}
	}
	return true
}

// isAWSSecretName reports whether name names an AWS secret access key.
func isAWSSecretName(name []byte) bool {
	var b [64]byte
	n := 0
	for _, c := range name {
		if c == '_' || c == '-' || c == '.' {
			continue
		}
		if n == len(b) {
			break
		}
		b[n] = lower(c)
		n++
	}
	s := b[:n]
	return bytes.Contains(s, []byte("secretaccesskey")) || bytes.Contains(s, []byte("awssecretkey")) || bytes.HasSuffix(s, []byte("awssecret"))
}

// secretName reports whether a member name says its value is a secret:
// it holds password, passwd, pwd, secret, api key, token, access key,
// private key or credential (case and '_', '-', '.' ignored). Names of
// protocol and paging tokens (MCP's progressToken, pageToken,
// nextPageToken...) and of token counts or endpoints are not: their values
// are ids, not credentials.
func secretName(name []byte) bool {
	if len(name) > 64 || len(name) < 3 {
		return false
	}
	var b [64]byte
	n := 0
	for _, c := range name {
		if c == '_' || c == '-' || c == '.' {
			continue // api_key, api-key and apikey read alike
		}
		b[n] = lower(c)
		n++
	}
	s := b[:n]
	found := false
	for i := 0; i < len(s) && !found; i++ {
		// One look per byte, by the first letter of the words.
		switch s[i] {
		case 'p':
			found = hasAt(s, i, "password") || hasAt(s, i, "passwd") || hasAt(s, i, "pwd") || hasAt(s, i, "privatekey")
		case 's':
			found = hasAt(s, i, "secret")
		case 'a':
			found = hasAt(s, i, "apikey") || hasAt(s, i, "accesskey")
		case 't':
			found = hasAt(s, i, "token")
		case 'c':
			found = hasAt(s, i, "credential")
		}
	}
	if !found {
		return false
	}
	for _, w := range notSecretNames {
		if bytes.Contains(s, w) {
			return false
		}
	}
	return true
}

var notSecretNames = func() (out [][]byte) {
	for _, w := range []string{"progresstoken", "pagetoken", "continuationtoken", "synctoken", "resumetoken", "cursortoken",
		"tokencount", "maxtokens", "tokens", "tokentype", "tokenendpoint", "tokenurl", "tokenuri", "tokenizer", "tokenexpir", "tokenttl"} {
		out = append(out, []byte(w))
	}
	return out
}()

// hasAt reports whether s holds word at i.
func hasAt(s []byte, i int, word string) bool {
	return len(s)-i >= len(word) && string(s[i:i+len(word)]) == word
}

// genericValue reports whether v looks like a generated secret: 12-128
// bytes of visible ASCII, a letter and a digit, entropy >= 3.5 bits per
// byte, and not a placeholder.
func genericValue(v []byte) bool {
	if len(v) < 12 || len(v) > 128 || placeholder(v) || testKey(v) || bytes.Contains(v, []byte("://")) {
		return false
	}
	letter, digit := false, false
	for _, c := range v {
		switch {
		case !valueByte(c):
			return false
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letter = true
		}
	}
	return letter && digit && entropy(v) >= 3.5
}

// entropy is v's Shannon entropy in bits per byte.
// It is log2(n) - (1/n)·Σ c·log2(c) over the byte counts c, with c·log2(c)
// from a table: one logarithm per call.
func entropy(v []byte) float64 {
	if len(v) == 0 || len(v) >= len(clog2c) {
		return 0
	}
	var counts [256]uint8
	for _, c := range v {
		counts[c]++
	}
	sum := 0.0
	for _, c := range v {
		if k := counts[c]; k > 0 {
			sum += clog2c[k]
			counts[c] = 0
		}
	}
	n := float64(len(v))
	return math.Log2(n) - sum/n
}

// clog2c[c] is c·log2(c), for the counts entropy sees (values are at most
// 128 bytes long).
var clog2c = func() (t [256]float64) {
	for c := 1; c < len(t); c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

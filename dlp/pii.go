package dlp

import (
	"bytes"
	"net/netip"
)

// tokens is the scanner's second pass: it walks text token by token (runs
// of letters and digits) and runs the shape-based detectors where their
// first byte can start: digits (cards, phones, SSNs, IPv4, bank numbers),
// '@' (emails), ':' (IPv6), a capital pair then two digits (IBANs). It
// also finds the encoded runs to decode.
func (st *state) tokens(text []byte, depth int) {
	n := len(text)
	b64Start := -1
	numEnd, ipv6End, pctEnd := 0, 0, 0
	for i := 0; i < n; {
		c := text[i]
		f := byteFlags[c]
		if f&fAlnum != 0 {
			j := i + 1
			for j < n && isAlnum[text[j]] {
				j++
			}
			switch {
			case f&fDigit != 0:
				// Fewer than 8 digits with nothing after them is no
				// digit shape: most numbers end here.
				if i >= numEnd && (j-i >= 8 || j+1 < n && byteFlags[text[j]]&fNumSep != 0 && (byteFlags[text[j+1]]&fDigit != 0 || text[j+1] == '(' || text[j] == ')') || i > 0 && (text[i-1] == '+' || text[i-1] == '(')) {
					numEnd = st.numeric(text, i)
				}
			default:
				// A token start (no letter or digit before): the
				// prefilter's lookup.
				if j-i >= 2 && anchorPair(c, text[i+1]) {
					st.anchored(text, i)
				} else if i > 0 && text[i-1] == '\\' && j-i >= 3 && escaped(text, i) && anchorPair(text[i+1], text[i+2]) {
					st.anchored(text, i+1) // \nghp_… in JSON text: the token starts after the escape
				}
				if f&fUpper != 0 && j-i >= 4 {
					st.iban(text, i)
				}
			}
			if b64Start < 0 {
				b64Start = i
			}
			i = j
			if j < n && text[j] == ' ' {
				// The commonest separator, handled here: it ends an
				// encoded run and starts nothing.
				if j-b64Start >= minBase64Run {
					st.encodedRun(text, b64Start, j, depth)
				}
				b64Start = -1
				i = j + 1
			}
			continue
		}
		if f&fSpecial != 0 {
			switch c {
			case '@':
				st.email(text, i)
			case ':':
				if i+2 < n && text[i+1] == '/' && text[i+2] == '/' {
					databaseURL(st, text, i, i+3)
				} else if i >= ipv6End && (i > 0 && ipv6Byte(text[i-1]) || i+1 < n && ipv6Byte(text[i+1])) {
					ipv6End = st.ipv6(text, i)
				}
				st.assignment(text, i)
			case '=':
				st.assignment(text, i)
			case '-':
				if i+10 < n && text[i+1] == '-' && hasPrefixFold(text[i:], "-----begin ") {
					privateKey(st, text, i, i+11)
				}
			case '%':
				if i >= pctEnd && i+2 < n && isHex[text[i+1]] && isHex[text[i+2]] {
					pctEnd = st.urlDecoded(text, i, depth)
				}
			}
		}
		if b64Start >= 0 && (f&fB64Join == 0 || c == '=' && i+1 < n && text[i+1] != '=' && isB64URL[text[i+1]]) {
			// '=' inside a run is an assignment (key=value), not
			// padding: the run ends there.
			if i-b64Start >= minBase64Run {
				st.encodedRun(text, b64Start, i, depth)
			}
			b64Start = -1
		}
		i++
	}
	if b64Start >= 0 && n-b64Start >= minBase64Run {
		st.encodedRun(text, b64Start, n, depth)
	}
}

// Flags of byteFlags.
const (
	fAlnum   = 1 << iota // a letter or digit
	fDigit               // a digit
	fUpper               // a capital letter
	fSpecial             // a byte a detector starts at: @ : = - %
	fB64Join             // a byte inside a base64 run: + / - _ =
	fNumSep              // a separator inside a number: space - . )
)

// byteFlags classifies each byte for the token pass, in one lookup.
var byteFlags = func() (t [256]uint8) {
	for c := range t {
		b := byte(c)
		if isAlnum[b] {
			t[c] |= fAlnum
		}
		if b >= '0' && b <= '9' {
			t[c] |= fDigit
		}
		if b >= 'A' && b <= 'Z' {
			t[c] |= fUpper
		}
		switch b {
		case '@', ':', '=', '-', '%':
			t[c] |= fSpecial
		}
		switch b {
		case '+', '/', '-', '_', '=':
			t[c] |= fB64Join
		}
		switch b {
		case ' ', '-', '.', ')':
			t[c] |= fNumSep
		}
	}
	return t
}()

var (
	emailLocal  = class(func(c byte) bool { return isAlnum[c] || bytes.IndexByte([]byte("._%+-"), c) >= 0 })
	emailDomain = class(func(c byte) bool { return isAlnum[c] || c == '.' || c == '-' })
)

// email checks the address around the '@' at text[at].
func (st *state) email(text []byte, at int) {
	s := at
	for s > 0 && at-s < 64 && emailLocal[text[s-1]] {
		s--
	}
	if s < at-1 && escaped(text, s) {
		s++ // \nalice@… in JSON text: the address starts after the escape
	}
	if s == at || s > 0 && emailLocal[text[s-1]] || text[s] == '.' || text[at-1] == '.' {
		return
	}
	e := at + 1
	for e < len(text) && e-at <= 255 && emailDomain[text[e]] {
		e++
	}
	for e > at+1 && (text[e-1] == '.' || text[e-1] == '-') {
		e--
	}
	dom := text[at+1 : e]
	dot := bytes.LastIndexByte(dom, '.')
	if dot <= 0 {
		return
	}
	tld := dom[dot+1:]
	if len(tld) < 2 {
		return
	}
	for _, c := range tld {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return
		}
	}
	for k, c := range dom {
		// Labels are not empty and neither start nor end with '-'.
		if c == '.' && (k == 0 || dom[k-1] == '.' || dom[k-1] == '-' || k+1 < len(dom) && dom[k+1] == '-') || k == 0 && c == '-' {
			return
		}
	}
	if userinfo(text, s) {
		return
	}
	st.emit(detEmail, s, e-s, 0.95)
}

// escaped reports whether text[i] is the letter of a JSON escape (\n, \t,
// \r) in text that was not decoded (a JSON document scanned as text).
func escaped(text []byte, i int) bool {
	return i > 0 && text[i-1] == '\\' && (text[i] == 'n' || text[i] == 't' || text[i] == 'r') && (i < 2 || text[i-2] != '\\')
}

// userinfo reports whether the address starting at s is the userinfo of
// a URL (scheme://user:password@host): no '/' between "://" and it.
func userinfo(text []byte, s int) bool {
	for i := s - 1; i >= 2 && s-i < 256; i-- {
		switch text[i] {
		case ' ', '\t', '\n', '"', '\'', '/', '?', '#', '=', '&':
			return text[i] == '/' && text[i-1] == '/' && text[i-2] == ':'
		}
	}
	return false
}

// numeric examines the number starting at text[i] (a digit after a
// non-alphanumeric byte) and returns where its span ends: the detectors
// of digit shapes (IPv4, SSN, card, phone, bank number) run here.
func (st *state) numeric(text []byte, i int) int {
	n := len(text)
	s := i
	plus, paren := false, false
	if i > 0 {
		switch text[i-1] {
		case '+':
			plus, s = true, i-1
		case '(':
			paren, s = true, i-1
			if i > 1 && text[i-2] == '+' {
				plus, s = true, i-2
			}
		case '.', '-', '/':
			// The middle of a dotted run, a negative number, a path.
			if i > 1 && (isAlnum[text[i-2]] || text[i-2] == '.') {
				return skipNumber(text, i)
			}
		}
	}
	if s > 0 && (isAlnum[text[s-1]] || text[s-1] == '.' || text[s-1] == '_') {
		return skipNumber(text, i)
	}
	// Groups of digits and the separators between them.
	var groups [12]int
	var seps [12]byte
	ng := 0
	var digits [24]byte
	nd := 0
	closed := false // the '(' group was closed
	j := i
	for ng < len(groups) {
		g := j
		for j < n && text[j] >= '0' && text[j] <= '9' {
			if nd < len(digits) {
				digits[nd] = text[j]
			}
			nd++
			j++
		}
		groups[ng] = j - g
		ng++
		if j >= n {
			break
		}
		// A separator: one of ' ', '-', '.', or ") " / ")" after a
		// parenthesised group, followed by a digit.
		c := text[j]
		k := j
		switch {
		case c == ')' && paren && !closed:
			closed = true
			k++
			if k < n && (text[k] == ' ' || text[k] == '-') {
				k++
			}
			c = ')'
		case c == ' ' || c == '-' || c == '.':
			k++
			if c == ' ' && k < n && text[k] == '(' && plus && ng == 1 {
				k++ // +44 (20) ...
				paren = true
			}
		default:
			k = j
		}
		if k == j || k >= n || text[k] < '0' || text[k] > '9' {
			break
		}
		seps[ng-1] = c
		j = k
	}
	end := j
	if end < n && (isAlnum[text[end]] || text[end] == '_') {
		return skipNumber(text, end)
	}
	if nd > len(digits) {
		return end
	}
	d := digits[:nd]
	g := groups[:ng]
	sp := seps[:max(ng-1, 0)]
	// IPv4: four dotted groups of 1-3 digits.
	if !plus && !paren && ng == 4 && allSep(sp, '.') && st.s.enabled[detIP] {
		if ipv4(text[i:end]) && !(end+1 < n && text[end] == '.' && text[end+1] >= '0' && text[end+1] <= '9') {
			st.emit(detIP, i, end-i, 0.85)
		}
		return end
	}
	if ng > 1 && allSep(sp, '.') && !(ng == 3 && g[0] == 3 && g[1] == 3 && g[2] == 4) {
		return end // versions, decimals; 415.555.0132 is a phone
	}
	// US SSN: ddd-dd-dddd, ddd dd dddd, or nine digits after "ssn".
	if !plus && !paren && (ng == 3 && g[0] == 3 && g[1] == 2 && g[2] == 4 && sp[0] == sp[1] && (sp[0] == '-' || sp[0] == ' ') ||
		ng == 1 && nd == 9 && contextBefore(text, i, 32, ssnWords)) {
		if validSSN(d) {
			st.emit(detSSN, i, end-i, 0.9)
			return end
		}
	}
	// Payment cards: 13-19 digits, contiguous or grouped (groups of 3 or
	// more, one separator kind: space or dash).
	if !plus && !paren && nd >= 13 && nd <= 19 && (ng == 1 || allSep(sp, sp[0]) && (sp[0] == ' ' || sp[0] == '-') && minGroup(g) >= 3) {
		if luhn(d) && cardBrand(d) {
			st.emit(detCard, i, end-i, 0.95)
			return end
		}
	}
	// Phones.
	if conf := phone(text, s, i, d, g, sp, plus, paren); conf > 0 {
		st.emit(detPhone, s, end-s, conf)
		return end
	}
	// US bank account numbers: 8-17 digits after an account word.
	if ng == 1 && nd >= 8 && nd <= 17 && contextBefore(text, i, 40, bankWords) {
		st.emit(detBank, i, end-i, 0.8)
	}
	return end
}

// skipNumber returns the end of the alphanumeric run at i.
func skipNumber(text []byte, i int) int {
	for i < len(text) && (isAlnum[text[i]] || text[i] == '.') {
		i++
	}
	return i
}

func allSep(sp []byte, c byte) bool {
	for _, s := range sp {
		if s != c {
			return false
		}
	}
	return true
}

func minGroup(g []int) int {
	m := g[0]
	for _, v := range g[1:] {
		m = min(m, v)
	}
	return m
}

func ipv4(b []byte) bool {
	parts := bytes.Split(b, []byte("."))
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if len(p) == 0 || len(p) > 3 || len(p) > 1 && p[0] == '0' {
			return false
		}
		v := 0
		for _, c := range p {
			v = v*10 + int(c-'0')
		}
		if v > 255 {
			return false
		}
	}
	return true
}

var (
	ssnWords   = []string{"ssn", "social security"}
	bankWords  = []string{"account number", "account no", "account num", "account #", "acct", "acct no", "bank account", "checking account", "savings account", "accountnumber"}
	phoneWords = []string{"phone", "tel", "telephone", "mobile", "cell", "fax", "sms", "call", "whatsapp", "contact number", "phonenumber"}
)

// contextBefore reports whether one of words occurs (case-insensitively,
// as whole words, with '_' and '-' read as spaces) in the window bytes
// before i.
func contextBefore(text []byte, i, window int, words []string) bool {
	s := max(0, i-window)
	var buf [66]byte
	w := append(buf[:0], ' ')
	for _, c := range text[s:i] {
		switch c = lower(c); c {
		case '_', '-':
			c = ' '
		}
		w = append(w, c)
	}
	w = append(w, ' ')
	for _, word := range words {
		for k := 0; ; {
			x := bytes.Index(w[k:], []byte(word))
			if x < 0 {
				break
			}
			x += k
			if !isAlnum[w[x-1]] && !isAlnum[w[x+len(word)]] {
				return true
			}
			k = x + 1
		}
	}
	return false
}

func hasDigit(b []byte) bool {
	for _, c := range b {
		if c >= '0' && c <= '9' {
			return true
		}
	}
	return false
}

func validSSN(d []byte) bool {
	area := string(d[0:3])
	group := string(d[3:5])
	serial := string(d[5:9])
	if area == "000" || area == "666" || d[0] == '9' || group == "00" || serial == "0000" {
		return false
	}
	switch string(d) {
	case "078051120", "219099999", "123456789":
		return false
	}
	return true
}

func luhn(d []byte) bool {
	sum := 0
	double := false
	for k := len(d) - 1; k >= 0; k-- {
		v := int(d[k] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// cardBrand reports whether d has a major brand's prefix and length.
func cardBrand(d []byte) bool {
	n := len(d)
	p := func(k int) int {
		v := 0
		for _, c := range d[:k] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	switch {
	case d[0] == '4':
		return n == 13 || n == 16 || n == 19
	case p(2) >= 51 && p(2) <= 55, p(4) >= 2221 && p(4) <= 2720:
		return n == 16
	case p(2) == 34 || p(2) == 37:
		return n == 15
	case p(4) == 6011, p(3) >= 644 && p(3) <= 649, p(2) == 65:
		return n >= 16 && n <= 19
	case p(4) >= 3528 && p(4) <= 3589:
		return n >= 16 && n <= 19
	case p(3) >= 300 && p(3) <= 305, p(2) == 36, p(2) == 38:
		return n == 14
	case p(2) == 62:
		return n >= 16 && n <= 19
	}
	return false
}

// phone returns the confidence that the number is a phone number, 0 when
// it is not one.
func phone(text []byte, s, i int, d []byte, g []int, sp []byte, plus, paren bool) float64 {
	nd := len(d)
	if plus {
		if nd >= 8 && nd <= 15 && d[0] != '0' && (len(g) > 1 || nd >= 10) {
			return 0.85
		}
		return 0
	}
	nanp := func(k int) bool { return d[k] >= '2' } // area / exchange start 2-9
	switch {
	case len(g) == 3 && g[0] == 3 && g[1] == 3 && g[2] == 4 && (paren || allSep(sp, sp[0])):
		if nanp(0) && nanp(3) {
			return 0.8
		}
	case len(g) == 4 && g[0] == 1 && d[0] == '1' && g[1] == 3 && g[2] == 3 && g[3] == 4 && allSep(sp, sp[0]):
		if nanp(1) && nanp(4) {
			return 0.8
		}
	case d[0] == '0' && (nd == 10 || nd == 11) && len(g) >= 2 && len(g) <= 3 && allSep(sp, ' ') && g[0] >= 3 && d[1] != '0':
		return 0.7
	case len(g) == 1 && (nd == 10 || nd == 11) && contextBefore(text, s, 32, phoneWords):
		return 0.75
	}
	return 0
}

// ibanLengths are the IBAN lengths of the registry's countries.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
	"RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

// iban checks an IBAN starting at text[i] (a capital letter starting a
// token): country, check digits, the country's length, mod-97 == 1.
func (st *state) iban(text []byte, i int) {
	if i+4 > len(text) || !(text[i+1] >= 'A' && text[i+1] <= 'Z') || !(text[i+2] >= '0' && text[i+2] <= '9') || !(text[i+3] >= '0' && text[i+3] <= '9') {
		return
	}
	want, ok := ibanLengths[string(text[i:i+2])]
	if !ok {
		return
	}
	var buf [34]byte
	nb := 0
	j := i
	grouped := false
	for j < len(text) && nb < want {
		c := text[j]
		switch {
		case c >= '0' && c <= '9' || c >= 'A' && c <= 'Z':
			buf[nb] = c
			nb++
			j++
		case c == ' ' && nb%4 == 0 && (nb == 4 || grouped) && j+1 < len(text) && isAlnum[text[j+1]]:
			grouped = true
			j++
		default:
			return
		}
	}
	if nb != want || at(text, j, &isAlnum) {
		return
	}
	// mod 97 of BBAN + country + check digits, letters as 10..35.
	rem := 0
	add := func(c byte) {
		if c >= 'A' {
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
		} else {
			rem = (rem*10 + int(c-'0')) % 97
		}
	}
	for _, c := range buf[4:nb] {
		add(c)
	}
	for _, c := range buf[:4] {
		add(c)
	}
	if rem == 1 {
		st.emit(detIBAN, i, j-i, 0.95)
	}
}

// ipv6Byte reports whether c can be part of an IPv6 address's text.
func ipv6Byte(c byte) bool { return isHex[c] || c == ':' || c == '.' }

// ipv6 checks for an IPv6 address around the ':' at text[c] and returns
// the end of what it examined.
func (st *state) ipv6(text []byte, c int) int {
	s := c
	for s > 0 && c-s < 45 && (isHex[text[s-1]] || text[s-1] == ':' || text[s-1] == '.') {
		s--
	}
	e := c
	for e < len(text) && e-s < 45 && (isHex[text[e]] || text[e] == ':' || text[e] == '.') {
		e++
	}
	// A run longer than any address (45 bytes, trailing dots aside) is
	// not one: skip the rest of it, rather than parse a window of it at
	// each of its colons.
	k := e
	for k < len(text) && text[k] == '.' {
		k++
	}
	if s > 0 && ipv6Byte(text[s-1]) || k < len(text) && ipv6Byte(text[k]) {
		for k < len(text) && ipv6Byte(text[k]) {
			k++
		}
		return k
	}
	for e > c+1 && text[e-1] == '.' {
		e--
	}
	if s > 0 && (isAlnum[text[s-1]] || text[s-1] == '_') || at(text, e, &isAlnum) {
		return e
	}
	cand := text[s:e]
	colons := bytes.Count(cand, []byte(":"))
	if colons < 2 || !bytes.Contains(cand, []byte("::")) && colons < 7 || len(cand) < 3 || !hasDigit(cand) {
		return e // dead::beef and x :: Int are code, not addresses
	}
	if _, err := netip.ParseAddr(string(cand)); err != nil {
		return e
	}
	if !st.s.enabled[detIP] {
		return e
	}
	st.emit(detIP, s, e-s, 0.8)
	return e
}

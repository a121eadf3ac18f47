package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in YAML as a Go duration string
// ("30s", "1h30m"), optionally led by whole days ("7d", "1d12h").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d the way ParseDuration reads it, without zero units:
// "30s", "1h30m", "7d".
func (d Duration) String() string {
	const day = 24 * time.Hour
	td := time.Duration(d)
	if td >= day && td%day == 0 {
		return strconv.FormatInt(int64(td/day), 10) + "d"
	}
	s := td.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses a Go duration string, optionally led by a number of
// whole days: "90s", "1h30m", "7d", "1d12h", "-5m".
func ParseDuration(s string) (Duration, error) {
	body, neg := strings.CutPrefix(s, "-")
	var total time.Duration
	if before, after, ok := strings.Cut(body, "d"); ok {
		if !isDigits(before) {
			return 0, fmt.Errorf("invalid duration %q: days must be a whole number, as in \"7d\"", s)
		}
		n, err := strconv.ParseInt(before, 10, 64)
		if err != nil || n > int64(math.MaxInt64/(24*time.Hour)) {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
		total, body = time.Duration(n)*24*time.Hour, after
		if body == "" {
			return sign(total, neg), nil
		}
	}
	if body == "" || body[0] == '-' || body[0] == '+' {
		return 0, fmt.Errorf("invalid duration %q: %w", s, errDurationSyntax)
	}
	rest, err := time.ParseDuration(body)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, errDurationSyntax)
	}
	if rest > math.MaxInt64-total {
		return 0, fmt.Errorf("invalid duration %q: too long", s)
	}
	return sign(total+rest, neg), nil
}

var errDurationSyntax = errors.New(`want a number and a unit, as in "30s", "5m", "1h30m" or "7d"`)

func sign(d time.Duration, neg bool) Duration {
	if neg {
		return Duration(-d)
	}
	return Duration(d)
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// ByteSize is a size in bytes, written in YAML as an integer or as a whole
// number with a unit: "512KiB", "4MiB", "1GiB" (binary) or "1KB", "10MB",
// "1GB" (decimal).
type ByteSize int64

// Byte size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
	KB  ByteSize = 1e3
	MB  ByteSize = 1e6
	GB  ByteSize = 1e9
	TB  ByteSize = 1e12
)

// byteUnits lists the units ParseByteSize accepts, largest first within
// each family so that String picks the largest exact one.
var byteUnits = []struct {
	name string
	size ByteSize
}{
	{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
	{"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	{"B", 1},
}

// Int returns b as an int.
func (b ByteSize) Int() int { return int(b) }

// String formats b with the largest unit that divides it exactly,
// preferring binary units: "4MiB", "10MB", "1500".
func (b ByteSize) String() string {
	if b > 0 {
		for _, u := range byteUnits {
			if u.size > 1 && b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.name
			}
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

var errByteSizeSyntax = errors.New(`want a whole number of bytes, optionally with a unit: B, KB, MB, GB, TB, KiB, MiB, GiB or TiB, as in "4MiB"`)

// ParseByteSize parses a whole number of bytes with an optional unit (B,
// KB, MB, GB, TB, KiB, MiB, GiB, TiB; a space before the unit is allowed).
func ParseByteSize(s string) (ByteSize, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: %w", s, errByteSizeSyntax)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	unit := strings.TrimPrefix(s[i:], " ")
	if unit == "" {
		return ByteSize(n), nil
	}
	for _, u := range byteUnits {
		if u.name == unit {
			if n > math.MaxInt64/int64(u.size) {
				return 0, fmt.Errorf("invalid size %q: too large", s)
			}
			return ByteSize(n) * u.size, nil
		}
	}
	return 0, fmt.Errorf("invalid size %q: %w", s, errByteSizeSyntax)
}

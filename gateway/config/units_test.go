package config

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want time.Duration
		err  bool
	}{
		{name: "seconds parse as a Go duration", in: "30s", want: 30 * time.Second},
		{name: "hours and minutes combine", in: "1h30m", want: 90 * time.Minute},
		{name: "days are whole days", in: "7d", want: 7 * 24 * time.Hour},
		{name: "days combine with a Go duration", in: "1d12h", want: 36 * time.Hour},
		{name: "a negative duration parses (validation refuses it)", in: "-5m", want: -5 * time.Minute},
		{name: "zero parses without a unit", in: "0", want: 0},
		{name: "empty is an error", in: "", err: true},
		{name: "a bare number is an error", in: "30", err: true},
		{name: "days without a number are an error", in: "d", err: true},
		{name: "fractional days are an error", in: "1.5d", err: true},
		{name: "two day parts are an error", in: "1d2d", err: true},
		{name: "a sign after the days is an error", in: "1d-5s", err: true},
		{name: "a plus sign is an error", in: "+5s", err: true},
		{name: "an unknown unit is an error", in: "5x", err: true},
		{name: "too many days is an error", in: "999999999999d", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got.D() != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got.D(), err, tt.want)
			}
		})
	}
}

func TestDurationString(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		want string
	}{
		{name: "whole days print as days", in: 14 * 24 * time.Hour, want: "14d"},
		{name: "whole hours drop zero minutes and seconds", in: 2 * time.Hour, want: "2h"},
		{name: "hours and minutes drop zero seconds", in: 90 * time.Minute, want: "1h30m"},
		{name: "whole minutes drop zero seconds", in: 5 * time.Minute, want: "5m"},
		{name: "seconds stay", in: 30 * time.Second, want: "30s"},
		{name: "sub-second values stay", in: 1500 * time.Millisecond, want: "1.5s"},
		{name: "zero is 0s", in: 0, want: "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Duration(tt.in)
			if got := d.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			back, err := ParseDuration(d.String())
			if err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", d.String(), back, err, d)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want ByteSize
		err  bool
	}{
		{name: "a bare integer is bytes", in: "4096", want: 4096},
		{name: "binary units are powers of 1024", in: "512KiB", want: 512 * 1024},
		{name: "MiB", in: "4MiB", want: 4 << 20},
		{name: "GiB", in: "1GiB", want: 1 << 30},
		{name: "decimal units are powers of 1000", in: "10MB", want: 10_000_000},
		{name: "KB", in: "1KB", want: 1000},
		{name: "a space before the unit is allowed", in: "4 MiB", want: 4 << 20},
		{name: "B is bytes", in: "100B", want: 100},
		{name: "empty is an error", in: "", err: true},
		{name: "a unit alone is an error", in: "MiB", err: true},
		{name: "lowercase units are an error", in: "4mib", err: true},
		{name: "a negative size is an error", in: "-1", err: true},
		{name: "a fraction is an error", in: "1.5MiB", err: true},
		{name: "an overflowing size is an error", in: "99999999999TiB", err: true},
		{name: "an overflowing integer is an error", in: "99999999999999999999", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("ParseByteSize(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		name string
		in   ByteSize
		want string
	}{
		{name: "exact binary multiples use the largest binary unit", in: 4 * MiB, want: "4MiB"},
		{name: "exact decimal multiples use a decimal unit", in: 10 * MB, want: "10MB"},
		{name: "other sizes print in bytes", in: 1500, want: "1500"},
		{name: "zero is 0", in: 0, want: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.String(); got != tt.want {
				t.Fatalf("String() = %q, want %q", got, tt.want)
			}
			back, err := ParseByteSize(tt.in.String())
			if err != nil || back != tt.in {
				t.Fatalf("ParseByteSize(%q) = %v, %v; want %v", tt.in.String(), back, err, tt.in)
			}
			if tt.in.Int() != int(tt.in) {
				t.Fatalf("Int() = %d", tt.in.Int())
			}
		})
	}
}

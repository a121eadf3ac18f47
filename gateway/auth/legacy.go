package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxFileBytes bounds a legacy tokens file.
const maxFileBytes = 16 << 20

// legacyFile is the JSON layout of the tokens file earlier versions kept
// ({"version":1,"tokens":[...]}).
type legacyFile struct {
	Version int            `json:"version"`
	Tokens  []legacyRecord `json:"tokens"`
}

type legacyRecord struct {
	ID        string     `json:"id"`
	Principal string     `json:"principal"`
	Groups    []string   `json:"groups"`
	Hash      string     `json:"hash"`
	Created   time.Time  `json:"created"`
	Revoked   *time.Time `json:"revoked,omitempty"`
}

// ReadLegacyFile reads the token records of a tokens file written by an
// earlier Sallyport, so that they can be moved into the store with Import.
func ReadLegacyFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("read tokens file %s: larger than %d bytes", path, maxFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var lf legacyFile
	if err := dec.Decode(&lf); err != nil {
		return nil, fmt.Errorf("read tokens file %s: malformed: %w", path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) { // More misses a stray ] or }
		return nil, fmt.Errorf("read tokens file %s: %w", path, errors.New("malformed: data after the JSON object"))
	}
	if lf.Version != 1 {
		return nil, fmt.Errorf("read tokens file %s: unsupported version %d (want 1)", path, lf.Version)
	}
	out := make([]Record, 0, len(lf.Tokens))
	for i, r := range lf.Tokens {
		rec := Record{ID: r.ID, Principal: r.Principal, Groups: r.Groups, Hash: r.Hash, Created: r.Created, Revoked: r.Revoked}
		if rec.Groups == nil {
			rec.Groups = []string{}
		}
		if err := check(rec); err != nil {
			return nil, fmt.Errorf("read tokens file %s: tokens[%d]: %w", path, i, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

package sqlite

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// tokenRecord returns a token record with the given id whose hash is
// derived from n.
func tokenRecord(id string, n int) gateway.TokenRecord {
	sum := sha256.Sum256(fmt.Appendf(nil, "token %d", n))
	return gateway.TokenRecord{
		ID: id, Principal: "alice", Groups: []string{"dev"}, Hash: hex.EncodeToString(sum[:]),
		Created: t0.Add(time.Duration(n) * time.Second),
	}
}

// version returns the tokens version, failing the test on an error.
func version(t *testing.T, ts gateway.TokenStore) int64 {
	t.Helper()
	v, err := ts.TokensVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTokenStore(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	ts := db.Tokens()

	a := tokenRecord("tok_0000000a", 1)
	b := tokenRecord("tok_0000000b", 2)
	b.Principal, b.Groups = "bob", nil
	c := tokenRecord("tok_0000000c", 3)
	c.Groups = []string{"ops", "dev", "émoji-🔑", `quote"d`}
	c.Created = a.Created // same second as a: ordered by id then

	t.Run("an inserted token is listed with its groups", func(t *testing.T) {
		before := version(t, ts)
		for _, r := range []gateway.TokenRecord{c, b, a} {
			if err := ts.InsertToken(ctx, r); err != nil {
				t.Fatal(err)
			}
			if v := version(t, ts); v <= before {
				t.Errorf("version %d after an insert, was %d", v, before)
			} else {
				before = v
			}
		}
		got, err := ts.Tokens(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantB := b
		wantB.Groups = []string{} // nil groups come back empty
		if want := []gateway.TokenRecord{a, c, wantB}; !reflect.DeepEqual(got, want) {
			t.Errorf("Tokens =\n%#v\nwant\n%#v", got, want)
		}
		for _, r := range got {
			if r.Created.Location() != time.UTC {
				t.Errorf("%s: created in %v", r.ID, r.Created.Location())
			}
		}
	})

	dup := tokenRecord("tok_00000dup", 99)
	tests := []struct {
		name string
		rec  gateway.TokenRecord
	}{
		{name: "a duplicate id", rec: func() gateway.TokenRecord { r := dup; r.ID = a.ID; return r }()},
		{name: "a duplicate hash", rec: func() gateway.TokenRecord { r := dup; r.Hash = b.Hash; return r }()},
		{name: "the same record again", rec: c},
	}
	for _, tt := range tests {
		t.Run("inserting "+tt.name+" is ErrTokenExists and changes nothing", func(t *testing.T) {
			before := version(t, ts)
			if err := ts.InsertToken(ctx, tt.rec); !errors.Is(err, gateway.ErrTokenExists) {
				t.Errorf("InsertToken = %v", err)
			}
			if v := version(t, ts); v != before {
				t.Errorf("version moved from %d to %d", before, v)
			}
			if got, _ := ts.Tokens(ctx); len(got) != 3 {
				t.Errorf("%d tokens", len(got))
			}
		})
	}

	revokedAt := t0.Add(time.Hour)
	t.Run("revoking sets the time and changes the version", func(t *testing.T) {
		before := version(t, ts)
		if err := ts.RevokeToken(ctx, a.ID, revokedAt.Add(500*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if v := version(t, ts); v == before {
			t.Error("version unchanged by a revocation")
		}
		got, _ := ts.Tokens(ctx)
		if got[0].ID != a.ID || got[0].Revoked == nil || !got[0].Revoked.Equal(revokedAt) || got[1].Revoked != nil || got[2].Revoked != nil {
			t.Errorf("Tokens = %v", got)
		}
	})
	t.Run("revoking twice keeps the first time", func(t *testing.T) {
		if err := ts.RevokeToken(ctx, a.ID, revokedAt.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		got, _ := ts.Tokens(ctx)
		if !got[0].Revoked.Equal(revokedAt) {
			t.Errorf("revoked at %v, want %v", got[0].Revoked, revokedAt)
		}
	})
	t.Run("revoking an unknown id is ErrTokenNotFound and changes nothing", func(t *testing.T) {
		before := version(t, ts)
		if err := ts.RevokeToken(ctx, "tok_ffffffff", revokedAt); !errors.Is(err, gateway.ErrTokenNotFound) {
			t.Errorf("RevokeToken = %v", err)
		}
		if v := version(t, ts); v != before {
			t.Errorf("version moved from %d to %d", before, v)
		}
	})
	t.Run("another handle on the file sees the changes and its own", func(t *testing.T) {
		other := openDB(t, db.Path(), Options{}).Tokens()
		if v1, v2 := version(t, ts), version(t, other); v1 != v2 {
			t.Errorf("versions %d and %d", v1, v2)
		}
		before := version(t, ts)
		if err := other.RevokeToken(ctx, b.ID, revokedAt); err != nil {
			t.Fatal(err)
		}
		if v := version(t, ts); v == before {
			t.Error("version unchanged by another handle's revocation")
		}
		got, _ := ts.Tokens(ctx)
		if got[2].ID != b.ID || got[2].Revoked == nil {
			t.Errorf("Tokens = %v", got)
		}
	})
	t.Run("a cancelled context is an error", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := ts.InsertToken(cctx, dup); err == nil {
			t.Error("InsertToken succeeded")
		}
		if _, err := ts.Tokens(cctx); err == nil {
			t.Error("Tokens succeeded")
		}
	})
	t.Run("groups that are not a list of strings are an error naming the token", func(t *testing.T) {
		if _, err := db.w.ExecContext(ctx, "UPDATE tokens SET groups = '{}' WHERE id = ?", c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Tokens(ctx); err == nil || !strings.Contains(err.Error(), c.ID) {
			t.Errorf("Tokens = %v", err)
		}
	})
}

func TestTokenWritesWhileTheAuditLogIsInUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openDB(t, dbPath(t), Options{})
	// The audit log has written before: the writer is shared with it.
	if err := db.Audit().Append(ctx, records(1, 3)...); err != nil {
		t.Fatal(err)
	}
	t.Run("a token can be inserted and revoked after the audit log wrote", func(t *testing.T) {
		if err := db.Tokens().InsertToken(ctx, tokenRecord("tok_00000001", 1)); err != nil {
			t.Fatal(err)
		}
		if err := db.Tokens().RevokeToken(ctx, "tok_00000001", t0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("token writes and appends interleave", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for j := range 25 {
					if err := db.Audit().Append(ctx, records(100*i+j, 1)...); err != nil {
						t.Error(err)
						return
					}
				}
			})
			wg.Go(func() {
				for j := range 10 {
					n := 1000 + 10*i + j
					if err := db.Tokens().InsertToken(ctx, tokenRecord(fmt.Sprintf("tok_%08x", n), n)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if toks, err := db.Tokens().Tokens(ctx); err != nil || len(toks) != 41 {
			t.Errorf("%d tokens, %v", len(toks), err)
		}
		rows := scanAll(t, db.Audit(), gateway.AuditFilter{})
		if len(rows) != 103 {
			t.Errorf("%d audit rows", len(rows))
		}
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
	})
}

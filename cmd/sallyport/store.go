package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/auth"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// openDB opens the configuration's database (dbPath overrides it).
func openDB(ctx context.Context, cfg *config.Config, dbPath string, readOnly bool) (*sqlite.DB, error) {
	path := cfg.Database
	if dbPath != "" {
		path = dbPath
	}
	return sqlite.Open(ctx, path, sqlite.Options{
		BusyTimeout:     cfg.Audit.BusyTimeout.D(),
		Synchronous:     cfg.Audit.Synchronous,
		ReadOnly:        readOnly,
		AuditKey:        auditKey(cfg),
		CheckpointEvery: int64(cfg.Audit.CheckpointEvery),
	})
}

func auditKey(cfg *config.Config) []byte {
	if cfg.Audit.Key == "" {
		return nil
	}
	return []byte(cfg.Audit.Key)
}

// openTokens returns the token store of db, with the tokens of a legacy
// tokens file moved in.
func openTokens(db *sqlite.DB, cfg *config.Config, log *slog.Logger) (*auth.Store, error) {
	tokens, err := auth.New(db.Tokens())
	if err != nil {
		return nil, err
	}
	if path := cfg.Auth.TokensFile; path != "" {
		recs, err := auth.ReadLegacyFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, err
		default:
			n := 0
			for _, r := range recs {
				added, err := tokens.Import(r)
				if err != nil {
					return nil, err
				}
				if added {
					n++
				}
			}
			if n > 0 {
				log.Warn("moved tokens from the legacy tokens file into the database; remove auth.tokens_file and the file",
					slog.Int("tokens", n), slog.String("file", path), slog.String("database", db.Path()))
			}
		}
	}
	return tokens, nil
}

// newAuditor returns the audit stages' Auditor over db.
func newAuditor(cfg *config.Config, db *sqlite.DB, log *slog.Logger) *audit.Auditor {
	return audit.New(audit.Options{
		Log:                 db.Audit(),
		Arguments:           cfg.Audit.Arguments,
		SampleNotifications: cfg.Audit.SampleNotifications,
		Logger:              log,
	})
}

// pruneEvery is how often retention runs.
const pruneEvery = time.Hour

// retain prunes rows older than the retention period, now and then every
// pruneEvery, until ctx ends.
func retain(ctx context.Context, log gateway.AuditLog, retention time.Duration, logger *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		n, err := log.Prune(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("audit retention failed", slog.String("err", err.Error()))
		case n > 0:
			logger.Info("audit retention pruned rows", slog.Int64("rows", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// dbFlagHelp is the help of the --db flag.
const dbFlagHelp = "database file, overriding the config's"

// closeDB closes the database, logging what could not be written (rows
// still queued when writes kept failing).
func closeDB(db *sqlite.DB, log *slog.Logger) {
	if err := db.Close(); err != nil {
		log.Error("closing the database", slog.String("err", err.Error()))
	}
}

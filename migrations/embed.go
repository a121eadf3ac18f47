// Package migrations holds the SQL schema of Sallyport's SQLite store as
// numbered files, NNNN_name.sql, applied in order by gateway/sqlite, each
// in one transaction. A file, once released, never changes: a schema
// change is a new file.
package migrations

import "embed"

// FS holds the migration files.
//
//go:embed *.sql
var FS embed.FS

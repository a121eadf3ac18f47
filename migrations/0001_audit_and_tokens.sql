-- The audit log: one row per message the pipeline handled. Each row's hash
-- covers its content and the previous row's hash (see gateway.AuditRecord).
CREATE TABLE audit (
	seq              INTEGER PRIMARY KEY,
	ts               INTEGER NOT NULL, -- unix microseconds
	session          TEXT NOT NULL DEFAULT '',
	transport        TEXT NOT NULL DEFAULT '',
	protocol_version TEXT NOT NULL DEFAULT '',
	client_name      TEXT NOT NULL DEFAULT '',
	client_version   TEXT NOT NULL DEFAULT '',
	principal        TEXT NOT NULL DEFAULT '',
	token_id         TEXT NOT NULL DEFAULT '',
	direction        TEXT NOT NULL DEFAULT '',
	kind             TEXT NOT NULL DEFAULT '',
	method           TEXT NOT NULL DEFAULT '',
	message_id       TEXT NOT NULL DEFAULT '',
	ref              INTEGER NOT NULL DEFAULT 0,
	backend          TEXT NOT NULL DEFAULT '',
	target           TEXT NOT NULL DEFAULT '',
	arguments        TEXT NOT NULL DEFAULT '',
	decision         TEXT NOT NULL DEFAULT '',
	reasons          TEXT NOT NULL DEFAULT '', -- JSON array, '' when none
	rules            TEXT NOT NULL DEFAULT '', -- JSON array, '' when none
	policy_version   TEXT NOT NULL DEFAULT '',
	outcome          TEXT NOT NULL DEFAULT '',
	error_code       INTEGER NOT NULL DEFAULT 0,
	error            TEXT NOT NULL DEFAULT '',
	latency_us       INTEGER NOT NULL DEFAULT 0,
	bytes            INTEGER NOT NULL DEFAULT 0,
	skipped          INTEGER NOT NULL DEFAULT 0,
	prev_hash        TEXT NOT NULL,
	hash             TEXT NOT NULL,
	mac              TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_ts ON audit (ts);
-- (filters other than time scan in seq order: no index to maintain per row)

-- Where the chain starts after retention pruned its beginning: the last
-- pruned row's seq and hash (one row, id 1, absent until the first prune).
CREATE TABLE audit_anchor (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	seq  INTEGER NOT NULL,
	hash TEXT NOT NULL,
	mac  TEXT NOT NULL DEFAULT '',
	ts   INTEGER NOT NULL
);

-- Client bearer tokens, by hash (never the token itself).
CREATE TABLE tokens (
	id        TEXT PRIMARY KEY,
	principal TEXT NOT NULL,
	groups    TEXT NOT NULL DEFAULT '[]', -- JSON array
	hash      TEXT NOT NULL UNIQUE,
	created   INTEGER NOT NULL, -- unix seconds
	revoked   INTEGER           -- unix seconds, NULL while valid
);

-- Counters other processes poll to notice changes (tokens_version).
CREATE TABLE counters (
	name  TEXT PRIMARY KEY,
	value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('tokens_version', 0);

-- Calls held for human approval (see gateway.ApprovalItem). The columns
-- are what the gateway selects on; the whole item, votes and transitions
-- included, is the JSON in item. rev grows with every change of any item
-- (counters.approvals_version), so another process notices changes by
-- reading the counter.
CREATE TABLE approvals (
	id        TEXT PRIMARY KEY,
	state     TEXT NOT NULL,
	principal TEXT NOT NULL,
	reviewers TEXT NOT NULL DEFAULT '', -- the group that decides: what a reviewer may see
	backend   TEXT NOT NULL DEFAULT '',
	target    TEXT NOT NULL DEFAULT '',
	binding   TEXT NOT NULL, -- sha256 of the binding: principal, backend, method, target, hashes, policy version
	call_key  TEXT NOT NULL, -- sha256 of principal, backend, method, target, arguments hash (ambiguous look-ups)
	created   INTEGER NOT NULL, -- unix microseconds
	expires   INTEGER NOT NULL, -- unix microseconds
	rev       INTEGER NOT NULL,
	item      TEXT NOT NULL
);
CREATE INDEX approvals_state ON approvals (state, expires);
CREATE INDEX approvals_binding ON approvals (binding);
CREATE INDEX approvals_call_key ON approvals (call_key);
CREATE INDEX approvals_rev ON approvals (rev);
CREATE INDEX approvals_principal ON approvals (principal, state);
INSERT INTO counters (name, value) VALUES ('approvals_version', 0);

-- The approval item an audit row belongs to (the held request, each
-- transition, the delivered call and its answer). Rows written before
-- have it empty; the row hash covers it only when it is not empty.
ALTER TABLE audit ADD COLUMN approval TEXT NOT NULL DEFAULT '';
-- Only the rows that have one are indexed: other rows cost nothing more.
CREATE INDEX audit_approval ON audit (approval) WHERE approval != '';

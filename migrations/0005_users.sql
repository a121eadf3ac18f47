-- Reviewer accounts: people who log in with a username and password, beside
-- the bearer tokens of programs. Only a hash of each password is kept, an
-- argon2id PHC string (see gateway.UserRecord). users_version grows with
-- every change, so another process notices changes by reading the counter.
CREATE TABLE users (
	username      TEXT PRIMARY KEY,
	groups        TEXT NOT NULL DEFAULT '[]', -- JSON array
	password_hash TEXT NOT NULL,
	created       INTEGER NOT NULL, -- unix seconds
	updated       INTEGER NOT NULL, -- unix seconds
	disabled      INTEGER           -- unix seconds, NULL while enabled
);
INSERT INTO counters (name, value) VALUES ('users_version', 0);

-- The DLP findings of each message: detector, path, span and action, never
-- the matched values. Rows written before have it empty; the row hash
-- covers it only when it is not empty, so their hashes stay valid.
ALTER TABLE audit ADD COLUMN findings TEXT NOT NULL DEFAULT '';

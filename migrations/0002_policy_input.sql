-- The policy input of each message (without its arguments and result), so
-- that `sallyport policy replay` can evaluate a candidate policy on
-- recorded traffic. Rows written before have it empty; the row hash covers
-- it only when it is not empty, so their hashes stay valid.
ALTER TABLE audit ADD COLUMN policy_input TEXT NOT NULL DEFAULT '';

-- What request a command key was first used for (a hash of its method and content), so that the
-- same key sent with a different request is refused instead of answered with the first result.
-- Rows written before this column existed have none and replay as before.
ALTER TABLE commands ADD COLUMN IF NOT EXISTS fingerprint bytea;

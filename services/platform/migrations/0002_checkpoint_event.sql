-- A bus source's checkpoint also names the event it stands on, so that a consumer can tell the
-- stream it resumes is the one it left (not purged, not replaced by a republish that renumbered
-- it) and find its place again in a republished stream.
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS event_id uuid;

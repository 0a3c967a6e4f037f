-- A bus source's checkpoint also names the last event it applied and where that event stood in
-- the stream, so that a consumer can tell the stream it resumes is the one it left (not purged,
-- not replaced by a republish that renumbered it) and find its place again in a rebuilt stream.
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS event_id uuid;
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS event_sequence bigint;

-- The DDL each projection's tables were last created with: a replica that starts runs it again
-- only when it changed, so a restart takes no lock on tables the running replicas write.
CREATE TABLE IF NOT EXISTS projection_ddl (
    projection text        PRIMARY KEY,
    ddl        text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- A projection that cannot apply an event stops at it and says so here, on every replica: which
-- event, why, since when. Cleared by the next advance.
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS stalled_position bigint;
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS stalled_event uuid;
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS stalled_error text;
ALTER TABLE projection_checkpoints ADD COLUMN IF NOT EXISTS stalled_since timestamptz;

-- The append-only event log of one service. See DESIGN.md "The log".
CREATE TABLE events (
    position       bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_type    text        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    payload        bytea       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_id, version)
);
CREATE UNIQUE INDEX events_position ON events (position);
-- Tailing reads in (transaction_id, position) order; see eventlog::tail.
CREATE INDEX events_tail ON events (transaction_id, position);

CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- One row per command that appended: a retry with the same key returns this result.
CREATE TABLE commands (
    command_key text        PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    position    bigint      NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Per-subject keys that seal personal fields; erasure deletes them.
CREATE TABLE sealing_keys (
    key_id     uuid        PRIMARY KEY,
    subject    text        NOT NULL,
    key        bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sealing_keys_subject ON sealing_keys (subject, created_at);

-- Where each projection stands in each source. Own-log sources store (transaction_id, position);
-- JetStream sources store the stream sequence in position.
CREATE TABLE projection_checkpoints (
    projection     text        NOT NULL,
    source         text        NOT NULL,
    transaction_id bigint      NOT NULL DEFAULT 0,
    position       bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, source)
);

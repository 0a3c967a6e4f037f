-- Kith engagement figures in SQL (DuckDB dialect), over `kith events export --format parquet`.
-- They follow "engagement definitions v2" (printed by `kith report engagement`) with its default
-- parameters, for a whole community: change a definition here and the figures follow it.
--
-- Before running it, point a view `events` at the export and set the community and the period
-- (from included, to excluded):
--
--   CREATE VIEW events AS
--     SELECT * FROM read_parquet('export/*/*.parquet', hive_partitioning = true);
--   SET VARIABLE community = '<communityId>';
--   SET VARIABLE period_from = TIMESTAMPTZ '2026-12-01 00:00:00+00';
--   SET VARIABLE period_to = TIMESTAMPTZ '2026-12-08 00:00:00+00';
--   .read analytics/engagement.sql
--
-- Times are compared as microseconds since the epoch and days are UTC days, so the result does
-- not depend on the session's time zone. The result is one row, its columns named as in the
-- report's JSON.

WITH params AS (
    SELECT
        getvariable('community') AS community,
        epoch_us(getvariable('period_from')) AS from_us,
        epoch_us(getvariable('period_to')) AS to_us
),
-- Every event up to the period's end, its time in microseconds and its UTC day.
history AS (
    SELECT e.event_type, e.event::JSON AS event, epoch_us(e.recorded_at) AS at_us,
           epoch_us(e.recorded_at) // 86400000000 AS day
    FROM events e, params p
    WHERE epoch_us(e.recorded_at) < p.to_us
),
-- The community's conversations.
conversations AS (
    SELECT DISTINCT h.event->>'conversation_id' AS conversation
    FROM history h, params p
    WHERE h.event_type = 'kith.messaging.v1.ConversationStarted'
      AND h.event->>'community_id' = p.community
),
messages AS (
    SELECT h.at_us, h.day, h.event->>'author_id' AS author, h.event->>'message_id' AS message,
           coalesce(h.event->>'thread_id', '') AS thread
    FROM history h JOIN conversations c ON h.event->>'conversation_id' = c.conversation
    WHERE h.event_type = 'kith.messaging.v1.MessagePosted'
),
-- Activity: writing, reacting, moving a read cursor.
activity AS (
    SELECT at_us, day, author AS member FROM messages
    UNION ALL
    SELECT h.at_us, h.day, h.event->>'member_id'
    FROM history h JOIN conversations c ON h.event->>'conversation_id' = c.conversation
    WHERE h.event_type IN ('kith.messaging.v1.ReactionAdded', 'kith.messaging.v1.ReadCursorMoved')
),
in_period AS (
    SELECT a.* FROM activity a, params p WHERE a.at_us >= p.from_us
),
days AS (
    SELECT unnest(range(p.from_us // 86400000000, (p.to_us - 1) // 86400000000 + 1)) AS day
    FROM params p
),
daily AS (
    SELECT d.day, count(DISTINCT i.member) AS active
    FROM days d LEFT JOIN in_period i ON i.day = d.day
    GROUP BY d.day
),
written AS (
    SELECT m.author AS member, count(*) AS n
    FROM messages m, params p WHERE m.at_us >= p.from_us
    GROUP BY m.author
),
-- Messages by every active member (0 for one who only reacted or read), for the Gini.
voices AS (
    SELECT a.member, coalesce(w.n, 0) AS x
    FROM (SELECT DISTINCT member FROM in_period) a LEFT JOIN written w USING (member)
),
ranked AS (
    SELECT x, row_number() OVER (ORDER BY x) AS i, count(*) OVER () AS n, sum(x) OVER () AS total
    FROM voices
),
starts AS (
    SELECT m.message AS thread, m.author, m.at_us
    FROM messages m, params p
    WHERE m.thread <> '' AND m.thread = m.message AND m.at_us >= p.from_us
),
waits AS (
    SELECT s.thread,
           (min(r.at_us) - s.at_us) // 1000000 AS wait
    FROM starts s
    LEFT JOIN messages r
      ON r.thread = s.thread AND r.message <> s.thread AND r.author <> s.author
         AND r.at_us >= s.at_us
    GROUP BY s.thread, s.at_us
),
answered AS (
    SELECT list_sort(list(wait)) AS sorted, count(*) AS n FROM waits WHERE wait IS NOT NULL
)
SELECT
    (SELECT count(DISTINCT member) FROM in_period) AS active_members,
    round((SELECT avg(active) FROM daily), 4) AS dau,
    (SELECT count(*) FROM messages m, params p
      WHERE m.at_us >= p.from_us AND NOT (m.thread <> '' AND m.thread <> m.message)) AS posts,
    (SELECT count(*) FROM messages m, params p
      WHERE m.at_us >= p.from_us AND m.thread <> '' AND m.thread <> m.message) AS replies,
    (SELECT count(*) FROM history h JOIN conversations c
        ON h.event->>'conversation_id' = c.conversation, params p
      WHERE h.event_type = 'kith.messaging.v1.ReactionAdded' AND h.at_us >= p.from_us) AS reactions,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.5 * n) AS BIGINT)] END
       FROM answered) AS first_reply_median_seconds,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.9 * n) AS BIGINT)] END
       FROM answered) AS first_reply_p90_seconds,
    (SELECT count(*) FROM waits WHERE wait IS NOT NULL) AS threads_answered,
    (SELECT count(*) FROM waits WHERE wait IS NULL) AS threads_unanswered,
    round(coalesce((SELECT CASE WHEN max(total) = 0 THEN 0
                        ELSE sum((2 * i - n - 1) * x) / (max(n) * max(total)) END
                    FROM ranked), 0), 4) AS participation_gini;

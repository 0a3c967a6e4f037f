-- Kith engagement figures in SQL (DuckDB dialect), over `kith events export --format parquet`.
-- They follow "engagement definitions v2" (printed by `kith report engagement`): every figure
-- of the report, for a community or one of its cohorts. Change a definition here and the
-- figures follow it.
--
-- Before running it, point a view `events` at the export and set the community and the period
-- (from included, to excluded); the other variables are optional:
--
--   CREATE VIEW events AS
--     SELECT * FROM read_parquet('export/*/*.parquet', hive_partitioning = true);
--   SET VARIABLE community = '<communityId>';
--   SET VARIABLE period_from = TIMESTAMPTZ '2026-12-01 00:00:00+00';
--   SET VARIABLE period_to = TIMESTAMPTZ '2026-12-08 00:00:00+00';
--   SET VARIABLE cohort = '<cohortId>';   -- optional: one cohort's conversation only
--   SET VARIABLE silent_days = 14;        -- optional: at risk after this many silent days
--   SET VARIABLE wau_days = 7;            -- optional: WAU's window
--   SET VARIABLE mau_days = 30;           -- optional: MAU's window
--   .read analytics/engagement.sql
--
-- Times are compared as microseconds since the epoch and days are UTC day numbers (days since
-- 1970-01-01, a Thursday, so a day's Monday is day - (day + 3) % 7), so the result does not
-- depend on the session's time zone. Events are taken in recorded order: time, then service
-- (membership, cohorts, messaging), then position in the service's log. The result is one row,
-- its columns named as in the report's JSON; the lists are lists of structs.

WITH params AS (
    SELECT
        getvariable('community') AS community,
        getvariable('cohort') AS cohort,
        epoch_us(getvariable('period_from')) AS from_us,
        epoch_us(getvariable('period_to')) AS to_us,
        epoch_us(getvariable('period_from')) // 86400000000 AS first_day,
        (epoch_us(getvariable('period_to')) - 1) // 86400000000 AS last_day,
        coalesce(getvariable('silent_days'), 14) AS silent_days,
        coalesce(getvariable('wau_days'), 7) AS wau_days,
        coalesce(getvariable('mau_days'), 30) AS mau_days
),
-- Every event up to the period's end: its time in microseconds, its UTC day, and its place in
-- recorded order (`seq`), which says what was true when something else happened.
history AS (
    SELECT e.event_type, e.event::JSON AS event, epoch_us(e.recorded_at) AS at_us,
           epoch_us(e.recorded_at) // 86400000000 AS day,
           row_number() OVER (
               ORDER BY epoch_us(e.recorded_at),
                        CASE e.service WHEN 'membership' THEN 0 WHEN 'cohorts' THEN 1
                                       WHEN 'messaging' THEN 2 ELSE 3 END,
                        e.position) AS seq
    FROM events e, params p
    WHERE epoch_us(e.recorded_at) < p.to_us
),
-- The conversations in scope: the community's, or the chosen cohort's.
conversations AS (
    SELECT DISTINCT h.event->>'conversation_id' AS conversation
    FROM history h, params p
    WHERE h.event_type = 'kith.messaging.v1.ConversationStarted'
      AND h.event->>'community_id' = p.community
      AND (p.cohort IS NULL OR h.event->>'cohort_id' = p.cohort)
),
messages AS (
    SELECT h.seq, h.at_us, h.day, h.event->>'conversation_id' AS conversation,
           h.event->>'author_id' AS author, h.event->>'message_id' AS message,
           coalesce(h.event->>'thread_id', '') AS thread
    FROM history h JOIN conversations c ON h.event->>'conversation_id' = c.conversation
    WHERE h.event_type = 'kith.messaging.v1.MessagePosted'
),
-- Activity: writing, reacting, moving a read cursor (drop a line to change what counts).
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
active AS (
    SELECT DISTINCT member FROM in_period
),
days AS (
    SELECT unnest(range(p.first_day, p.last_day + 1)) AS day FROM params p
),
daily AS (
    SELECT d.day, count(DISTINCT i.member) AS active
    FROM days d LEFT JOIN in_period i ON i.day = d.day
    GROUP BY d.day
),
weekly AS (
    SELECT d.day, count(DISTINCT a.member) AS active
    FROM days d CROSS JOIN params p
    LEFT JOIN activity a ON a.day BETWEEN d.day - p.wau_days + 1 AND d.day
    GROUP BY d.day
),
monthly AS (
    SELECT count(DISTINCT a.member) AS mau
    FROM activity a, params p
    WHERE a.day BETWEEN p.last_day - p.mau_days + 1 AND p.last_day
),
written AS (
    SELECT m.author AS member, count(*) AS n
    FROM messages m, params p WHERE m.at_us >= p.from_us
    GROUP BY m.author
),
-- Messages by every active member (0 for one who only reacted or read), for the Gini.
voices AS (
    SELECT a.member, coalesce(w.n, 0) AS x
    FROM active a LEFT JOIN written w USING (member)
),
ranked AS (
    SELECT x, row_number() OVER (ORDER BY x) AS i, count(*) OVER () AS n, sum(x) OVER () AS total
    FROM voices
),
-- Weeks that start (on a Monday) in the period, and the active members who wrote in each.
weeks AS (
    SELECT day AS week FROM days WHERE (day + 3) % 7 = 0
),
speaking AS (
    SELECT w.week, count(DISTINCT m.author) AS wrote
    FROM weeks w
    LEFT JOIN (SELECT m.day, m.author
               FROM messages m JOIN active a ON a.member = m.author CROSS JOIN params p
               WHERE m.at_us >= p.from_us) m
      ON m.day - (m.day + 3) % 7 = w.week
    GROUP BY w.week
),
-- The cohorts in scope, and their events after their creation.
cohorts AS (
    SELECT DISTINCT h.event->>'cohort_id' AS cohort
    FROM history h, params p
    WHERE h.event_type = 'kith.cohorts.v1.CohortCreated'
      AND h.event->>'community_id' = p.community
      AND (p.cohort IS NULL OR h.event->>'cohort_id' = p.cohort)
),
cohort_events AS (
    SELECT h.seq, h.at_us, h.event_type, h.event, h.event->>'cohort_id' AS cohort,
           h.event->>'member_id' AS member
    FROM history h JOIN cohorts c ON h.event->>'cohort_id' = c.cohort
    WHERE h.event_type LIKE 'kith.cohorts.v1.%'
      AND h.event_type <> 'kith.cohorts.v1.CohortCreated'
),
-- Who facilitates: assigned, until removed or gone from the cohort.
facilitation AS (
    SELECT cohort, member, seq, event_type = 'kith.cohorts.v1.FacilitatorAssigned' AS facilitating
    FROM cohort_events
    WHERE event_type IN ('kith.cohorts.v1.FacilitatorAssigned', 'kith.cohorts.v1.FacilitatorRemoved',
                         'kith.cohorts.v1.MemberLeftCohort', 'kith.cohorts.v1.MemberRemovedFromCohort',
                         'kith.cohorts.v1.MemberReleased')
),
-- Each message, and whether its author facilitated its cohort (a cohort's conversation has the
-- cohort's id) when it was written.
voiced AS (
    SELECT m.*, coalesce(f.facilitating, false) AS facilitating
    FROM messages m ASOF LEFT JOIN facilitation f
      ON f.cohort = m.conversation AND f.member = m.author AND m.seq >= f.seq
),
starts AS (
    SELECT v.message AS thread, v.author, v.at_us, v.seq,
           NOT v.facilitating AND v.conversation IN (SELECT cohort FROM cohorts) AS awaits_facilitator
    FROM voiced v, params p
    WHERE v.thread <> '' AND v.thread = v.message AND v.at_us >= p.from_us
),
waits AS (
    SELECT s.thread, (min(r.at_us) - s.at_us) // 1000000 AS wait
    FROM starts s
    LEFT JOIN messages r
      ON r.thread = s.thread AND r.message <> s.thread AND r.author <> s.author
         AND r.seq > s.seq
    GROUP BY s.thread, s.at_us
),
answered AS (
    SELECT list_sort(list(wait)) AS sorted, count(*) AS n FROM waits WHERE wait IS NOT NULL
),
facilitator_waits AS (
    SELECT s.thread, (min(r.at_us) - s.at_us) // 1000000 AS wait
    FROM starts s
    LEFT JOIN voiced r
      ON r.thread = s.thread AND r.message <> s.thread AND r.facilitating AND r.seq > s.seq
    WHERE s.awaits_facilitator
    GROUP BY s.thread, s.at_us
),
facilitator_answered AS (
    SELECT list_sort(list(wait)) AS sorted, count(*) AS n
    FROM facilitator_waits WHERE wait IS NOT NULL
),
-- Seats: taken by joining or by promotion from the waitlist, given up by leaving, removal or
-- release.
seat_changes AS (
    SELECT cohort, member, seq, at_us,
           event_type IN ('kith.cohorts.v1.MemberJoinedCohort', 'kith.cohorts.v1.WaitlistPromoted') AS seated
    FROM cohort_events
    WHERE event_type IN ('kith.cohorts.v1.MemberJoinedCohort', 'kith.cohorts.v1.WaitlistPromoted',
                         'kith.cohorts.v1.MemberLeftCohort', 'kith.cohorts.v1.MemberRemovedFromCohort',
                         'kith.cohorts.v1.MemberReleased')
),
-- Sessions as last scheduled, starting in the period and not cancelled.
schedules AS (
    SELECT event->>'session_id' AS session, arg_max(cohort, seq) AS cohort,
           arg_max(epoch_us(TRY_CAST(event->>'starts_at' AS TIMESTAMPTZ)), seq) AS starts_us
    FROM cohort_events
    WHERE event_type IN ('kith.cohorts.v1.SessionScheduled', 'kith.cohorts.v1.SessionRescheduled')
    GROUP BY 1
),
sessions AS (
    SELECT s.* FROM schedules s, params p
    WHERE s.starts_us >= p.from_us AND s.starts_us < p.to_us
      AND NOT EXISTS (SELECT 1 FROM cohort_events c
                      WHERE c.event_type = 'kith.cohorts.v1.SessionCancelled'
                        AND c.event->>'session_id' = s.session)
),
-- A session's seats: the members seated in its cohort when it starts.
seated AS (
    SELECT s.session, c.member
    FROM sessions s JOIN seat_changes c ON c.cohort = s.cohort AND c.at_us <= s.starts_us
    GROUP BY s.session, c.member
    HAVING arg_max(c.seated, c.seq)
),
answers AS (
    SELECT event->>'session_id' AS session, member,
           arg_max(coalesce(event->>'response' = 'RSVP_RESPONSE_YES', false), seq) AS yes
    FROM cohort_events WHERE event_type = 'kith.cohorts.v1.SessionRsvp'
    GROUP BY 1, 2
),
-- The last attendance recorded for each session (an empty list is omitted from the JSON).
attendance AS (
    SELECT event->>'session_id' AS session,
           arg_max(coalesce(from_json(event->'present', '["VARCHAR"]'), []), seq) AS present
    FROM cohort_events WHERE event_type = 'kith.cohorts.v1.AttendanceRecorded'
    GROUP BY 1
),
session_figures AS (
    SELECT
        (SELECT count(*) FROM sessions) AS sessions,
        (SELECT count(*) FROM seated) AS seats,
        (SELECT count(*) FROM seated t JOIN answers a USING (session, member) WHERE a.yes) AS yes,
        (SELECT count(*) FROM sessions s JOIN attendance a USING (session)) AS recorded,
        (SELECT count(*) FROM seated t JOIN attendance a USING (session)) AS expected,
        (SELECT count(*) FROM seated t JOIN attendance a USING (session)
          WHERE list_contains(a.present, t.member)) AS present
),
-- The waitlist: each member's place in a cohort's queue, event by event.
queue AS (
    SELECT cohort, member, seq, at_us, event_type,
           lag(event_type) OVER w AS before_type, lag(at_us) OVER w AS before_at
    FROM cohort_events
    WHERE event_type IN ('kith.cohorts.v1.MemberWaitlisted', 'kith.cohorts.v1.WaitlistPromoted',
                         'kith.cohorts.v1.MemberLeftCohort', 'kith.cohorts.v1.MemberRemovedFromCohort',
                         'kith.cohorts.v1.MemberReleased')
    WINDOW w AS (PARTITION BY cohort, member ORDER BY seq)
),
promotions AS (
    SELECT list_sort(list((q.at_us - q.before_at) // 1000000)) AS sorted, count(*) AS n
    FROM queue q, params p
    WHERE q.event_type = 'kith.cohorts.v1.WaitlistPromoted'
      AND q.before_type = 'kith.cohorts.v1.MemberWaitlisted'
      AND q.at_us >= p.from_us
),
waiting_at_end AS (
    SELECT cohort, member FROM queue
    GROUP BY cohort, member
    HAVING arg_max(event_type, seq) = 'kith.cohorts.v1.MemberWaitlisted'
),
-- At risk: active in the period of the same length just before this one (by days), and no
-- activity in the last `silent_days` days of this one.
at_risk AS (
    SELECT a.member, max(a.at_us) AS last_us
    FROM activity a, params p
    WHERE a.member IN (
        SELECT b.member FROM activity b, params q
        WHERE b.day BETWEEN (q.from_us - (q.to_us - q.from_us)) // 86400000000
                        AND (q.from_us - 1) // 86400000000)
    GROUP BY a.member
    HAVING max(a.at_us) < any_value(p.to_us) - any_value(p.silent_days) * 86400000000
),
-- Retention: members who joined the community in each week of the period, and the share of
-- them active in that week and each later week that starts before the period's end.
joins AS (
    SELECT DISTINCT h.day - (h.day + 3) % 7 AS week, h.event->>'member_id' AS member
    FROM history h, params p
    WHERE h.event_type = 'kith.membership.v1.MemberJoined'
      AND h.event->>'community_id' = p.community AND h.at_us >= p.from_us
),
join_weeks AS (
    SELECT week, count(*) AS joined FROM joins GROUP BY week
),
week_starts AS (
    SELECT jw.week, jw.joined, unnest(range(jw.week, p.last_day + 1, 7)) AS start
    FROM join_weeks jw, params p
),
joined_activity AS (
    SELECT DISTINCT j.week, j.member, a.day FROM joins j JOIN activity a USING (member)
),
retention_cells AS (
    SELECT ws.week, ws.joined, ws.start, count(DISTINCT ja.member) AS kept
    FROM week_starts ws
    LEFT JOIN joined_activity ja
      ON ja.week = ws.week AND ja.day BETWEEN ws.start AND ws.start + 6
    GROUP BY ws.week, ws.joined, ws.start
),
retention AS (
    SELECT week, joined, list(round(kept / joined, 4) ORDER BY start) AS active_share
    FROM retention_cells GROUP BY week, joined
)
SELECT
    (SELECT count(*) FROM active) AS active_members,
    round((SELECT avg(active) FROM daily), 4) AS dau,
    round((SELECT avg(active) FROM weekly), 4) AS wau,
    (SELECT mau FROM monthly) AS mau,
    (SELECT CASE WHEN mau = 0 THEN 0 ELSE round((SELECT avg(active) FROM daily) / mau, 4) END
       FROM monthly) AS stickiness,
    (SELECT count(*) FROM messages m, params p
      WHERE m.at_us >= p.from_us AND NOT (m.thread <> '' AND m.thread <> m.message)) AS posts,
    (SELECT count(*) FROM messages m, params p
      WHERE m.at_us >= p.from_us AND m.thread <> '' AND m.thread <> m.message) AS replies,
    (SELECT count(*) FROM history h JOIN conversations c
        ON h.event->>'conversation_id' = c.conversation, params p
      WHERE h.event_type = 'kith.messaging.v1.ReactionAdded' AND h.at_us >= p.from_us) AS reactions,
    -- Percentiles by nearest rank: the ceil(p * n)-th of the sorted values.
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.5 * n) AS BIGINT)] END
       FROM answered) AS first_reply_median_seconds,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.9 * n) AS BIGINT)] END
       FROM answered) AS first_reply_p90_seconds,
    (SELECT count(*) FROM waits WHERE wait IS NOT NULL) AS threads_answered,
    (SELECT count(*) FROM waits WHERE wait IS NULL) AS threads_unanswered,
    round(coalesce((SELECT CASE WHEN max(total) = 0 THEN 0
                        ELSE sum((2 * i - n - 1) * x) / (max(n) * max(total)) END
                    FROM ranked), 0), 4) AS participation_gini,
    (SELECT list({'day': CAST(DATE '1970-01-01' + CAST(day AS INTEGER) AS VARCHAR),
                  'active': active} ORDER BY day)
       FROM daily) AS daily_active,
    (SELECT coalesce(list({'member_id': member, 'messages': x} ORDER BY x DESC, member), [])
       FROM voices) AS voices,
    (SELECT coalesce(list({'week': CAST(DATE '1970-01-01' + CAST(s.week AS INTEGER) AS VARCHAR),
                           'share': CASE WHEN (SELECT count(*) FROM active) = 0 THEN 0
                                         ELSE round(s.wrote / (SELECT count(*) FROM active), 4) END}
                          ORDER BY s.week), [])
       FROM speaking s) AS speaking_share,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.5 * n) AS BIGINT)] END
       FROM facilitator_answered) AS facilitator_response_median_seconds,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.9 * n) AS BIGINT)] END
       FROM facilitator_answered) AS facilitator_response_p90_seconds,
    (SELECT count(*) FROM facilitator_waits WHERE wait IS NOT NULL) AS threads_answered_by_facilitator,
    (SELECT count(*) FROM facilitator_waits WHERE wait IS NULL) AS threads_awaiting_facilitator,
    (SELECT sessions FROM session_figures) AS sessions,
    (SELECT CASE WHEN seats = 0 THEN 0 ELSE round(yes / seats, 4) END
       FROM session_figures) AS rsvp_yes_rate,
    (SELECT CASE WHEN expected = 0 THEN 0 ELSE round(present / expected, 4) END
       FROM session_figures) AS attendance_rate,
    (SELECT recorded FROM session_figures) AS sessions_with_attendance,
    (SELECT count(*) FROM waiting_at_end) AS waitlist_at_end,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.5 * n) AS BIGINT)] END
       FROM promotions) AS waitlist_wait_median_seconds,
    (SELECT CASE WHEN n = 0 THEN NULL ELSE sorted[CAST(ceil(0.9 * n) AS BIGINT)] END
       FROM promotions) AS waitlist_wait_p90_seconds,
    (SELECT n FROM promotions) AS promoted,
    (SELECT coalesce(list({'member_id': member,
                           'last_active': strftime(make_timestamp(last_us), '%Y-%m-%dT%H:%M:%S.%f+00:00')}
                          ORDER BY member), [])
       FROM at_risk) AS at_risk,
    (SELECT coalesce(list({'week': CAST(DATE '1970-01-01' + CAST(week AS INTEGER) AS VARCHAR),
                           'joined': joined, 'active_share': active_share} ORDER BY week), [])
       FROM retention) AS retention;

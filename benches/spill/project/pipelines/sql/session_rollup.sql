-- Per-customer session features from raw.events: sessionize (one group per customer and
-- session, ~10M at the full size, which the hash aggregation cannot hold in the limit), order
-- each customer's sessions in time for the gap since the previous one (a sort of every
-- session, which spills too), then roll up per customer. benches/spill/compare.py runs the
-- same query in DuckDB; keep the two in step.
WITH sessions AS (
  SELECT customer_id,
         session_id,
         COUNT(*) AS events,
         MIN(event_ts) AS started,
         MAX(event_ts) AS ended,
         SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carts,
         MAX(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS converted
  FROM raw.events
  GROUP BY customer_id, session_id
), gaps AS (
  SELECT customer_id,
         events,
         started,
         ended,
         carts,
         converted,
         CAST(ended AS BIGINT) - CAST(started AS BIGINT) AS duration_us,
         CAST(started AS BIGINT)
           - LAG(CAST(ended AS BIGINT)) OVER (PARTITION BY customer_id ORDER BY started, session_id)
           AS gap_us
  FROM sessions
)
SELECT customer_id,
       COUNT(*) AS sessions,
       SUM(events) AS events,
       SUM(carts) AS carts,
       SUM(converted) AS converting_sessions,
       CAST(SUM(converted) AS DOUBLE) / COUNT(*) AS conversion_rate,
       MIN(started) AS first_seen,
       MAX(ended) AS last_seen,
       CAST(SUM(duration_us) AS DOUBLE) / COUNT(*) / 1e6 AS mean_session_s,
       MAX(gap_us) / 1e6 AS longest_gap_s,
       MIN(gap_us) / 1e6 AS shortest_gap_s
FROM gaps
GROUP BY customer_id

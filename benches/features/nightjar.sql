-- The feature SQL benchmark's query (benches/features/run.sh), as nightjar runs it: RFM and
-- 28-day engagement per customer as of {{ as_of }}, from the raw events and orders.
-- benches/features/peers.py states the same query for DuckDB and in Polars' expression API.
WITH activity AS (
  SELECT customer_id,
         MAX(CASE WHEN event_type = 'checkout' THEN event_ts END) AS last_purchase_ts,
         SUM(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS frequency,
         COUNT(DISTINCT CASE WHEN event_ts >= {{ as_of }} - INTERVAL '28 days' THEN session_id END) AS sessions_28d,
         SUM(CASE WHEN event_ts >= {{ as_of }} - INTERVAL '28 days' AND event_type = 'page_view' THEN 1 ELSE 0 END) AS page_views_28d,
         SUM(CASE WHEN event_ts >= {{ as_of }} - INTERVAL '28 days' AND event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS add_to_cart_28d
  FROM events
  WHERE event_ts < {{ as_of }}
  GROUP BY customer_id
),
spend AS (
  SELECT customer_id, SUM(amount) AS monetary
  FROM orders
  WHERE order_ts < {{ as_of }}
  GROUP BY customer_id
)
SELECT a.customer_id,
       CAST(to_unixtime({{ as_of }}) - to_unixtime(a.last_purchase_ts) AS DOUBLE) / 86400.0 AS recency_days,
       a.frequency,
       COALESCE(s.monetary, 0.0) AS monetary,
       a.sessions_28d,
       a.page_views_28d,
       a.add_to_cart_28d
FROM activity a
LEFT JOIN spend s ON s.customer_id = a.customer_id

-- Engagement as of {{ as_of }}, from sessions that started before it.
WITH sessions AS (
  SELECT customer_id, session_start, page_views, add_to_cart
  FROM staging.sessions
  WHERE session_start < {{ as_of }}
    AND session_start >= {{ as_of }} - INTERVAL '28 days'
),
per_customer AS (
  SELECT customer_id,
         SUM(CASE WHEN session_start >= {{ as_of }} - INTERVAL '7 days' THEN 1 ELSE 0 END) AS sessions_7d,
         COUNT(*) AS sessions_28d,
         SUM(CASE WHEN session_start >= {{ as_of }} - INTERVAL '7 days' THEN page_views ELSE 0 END) AS page_views_7d,
         SUM(page_views) AS page_views_28d,
         SUM(CASE WHEN session_start >= {{ as_of }} - INTERVAL '7 days' THEN add_to_cart ELSE 0 END) AS add_to_cart_7d,
         SUM(add_to_cart) AS add_to_cart_28d
  FROM sessions
  GROUP BY customer_id
)
SELECT c.customer_id,
       {{ as_of }} AS feature_ts,
       COALESCE(p.sessions_7d, 0) AS sessions_7d,
       COALESCE(p.sessions_28d, 0) AS sessions_28d,
       COALESCE(p.page_views_7d, 0) AS page_views_7d,
       COALESCE(p.page_views_28d, 0) AS page_views_28d,
       COALESCE(p.add_to_cart_7d, 0) AS add_to_cart_7d,
       COALESCE(p.add_to_cart_28d, 0) AS add_to_cart_28d,
       CAST(p.sessions_7d AS DOUBLE) / (CAST(p.sessions_28d AS DOUBLE) / 4.0) AS session_trend
FROM raw.customers c
LEFT JOIN per_customer p ON p.customer_id = c.customer_id
WHERE CAST(c.signup_date AS TIMESTAMP) < {{ as_of }}

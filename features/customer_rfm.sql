-- Recency, frequency, monetary as of {{ as_of }}: only orders strictly before it count.
WITH orders AS (
  SELECT customer_id, order_ts, amount
  FROM staging.orders
  WHERE order_ts < {{ as_of }}
    AND order_ts >= {{ as_of }} - INTERVAL '365 days'
),
per_customer AS (
  SELECT customer_id,
         MAX(order_ts) AS last_order_ts,
         SUM(CASE WHEN order_ts >= {{ as_of }} - INTERVAL '30 days' THEN 1 ELSE 0 END) AS orders_30d,
         SUM(CASE WHEN order_ts >= {{ as_of }} - INTERVAL '90 days' THEN 1 ELSE 0 END) AS orders_90d,
         COUNT(*) AS orders_365d,
         SUM(CASE WHEN order_ts >= {{ as_of }} - INTERVAL '30 days' THEN amount ELSE 0 END) AS revenue_30d,
         SUM(CASE WHEN order_ts >= {{ as_of }} - INTERVAL '90 days' THEN amount ELSE 0 END) AS revenue_90d,
         SUM(amount) AS revenue_365d
  FROM orders
  GROUP BY customer_id
)
SELECT c.customer_id,
       {{ as_of }} AS feature_ts,
       CAST((to_unixtime({{ as_of }}) - to_unixtime(CAST(c.signup_date AS TIMESTAMP))) / 86400 AS DOUBLE) AS tenure_days,
       CAST((to_unixtime({{ as_of }}) - to_unixtime(p.last_order_ts)) / 86400.0 AS DOUBLE) AS recency_days,
       COALESCE(p.orders_30d, 0) AS orders_30d,
       COALESCE(p.orders_90d, 0) AS orders_90d,
       COALESCE(p.orders_365d, 0) AS orders_365d,
       COALESCE(p.revenue_30d, 0.0) AS revenue_30d,
       COALESCE(p.revenue_90d, 0.0) AS revenue_90d,
       COALESCE(p.revenue_365d, 0.0) AS revenue_365d
FROM raw.customers c
LEFT JOIN per_customer p ON p.customer_id = c.customer_id
WHERE CAST(c.signup_date AS TIMESTAMP) < {{ as_of }}

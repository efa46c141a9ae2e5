-- What every tool's result is compared by (one row); the same text runs in nightjar and DuckDB.
SELECT COUNT(*) AS groups, SUM(recency_days) AS recency_days, SUM(frequency) AS frequency,
       SUM(monetary) AS monetary, SUM(sessions_28d) AS sessions_28d,
       SUM(page_views_28d) AS page_views_28d, SUM(add_to_cart_28d) AS add_to_cart_28d
FROM result

-- One row per session: when it started, how deep it went, and whether it reached the cart.
SELECT session_id,
       customer_id,
       MIN(event_ts) AS session_start,
       MAX(event_ts) AS session_end,
       SUM(CASE WHEN event_type = 'page_view' THEN 1 ELSE 0 END) AS page_views,
       SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS add_to_cart,
       SUM(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS checkouts
FROM raw.events
GROUP BY session_id, customer_id

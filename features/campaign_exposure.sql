-- Campaign exposure as of {{ as_of }}.
WITH exposures AS (
  SELECT customer_id, campaign_id, channel, exposure_ts
  FROM raw.exposures
  WHERE exposure_ts < {{ as_of }}
    AND exposure_ts >= {{ as_of }} - INTERVAL '30 days'
),
per_customer AS (
  SELECT customer_id,
         COUNT(*) AS exposures_30d,
         SUM(CASE WHEN channel = 'email' THEN 1 ELSE 0 END) AS email_exposures_30d,
         COUNT(DISTINCT campaign_id) AS campaigns_30d,
         MAX(exposure_ts) AS last_exposure_ts
  FROM exposures
  GROUP BY customer_id
)
SELECT c.customer_id,
       {{ as_of }} AS feature_ts,
       COALESCE(p.exposures_30d, 0) AS exposures_30d,
       COALESCE(p.email_exposures_30d, 0) AS email_exposures_30d,
       COALESCE(p.campaigns_30d, 0) AS campaigns_30d,
       CAST((to_unixtime({{ as_of }}) - to_unixtime(p.last_exposure_ts)) / 86400.0 AS DOUBLE) AS days_since_exposure
FROM raw.customers c
LEFT JOIN per_customer p ON p.customer_id = c.customer_id
WHERE CAST(c.signup_date AS TIMESTAMP) < {{ as_of }}

WITH exposure_rows AS (
  SELECT
    x.`user_id` AS unit_id,
    x.`arm` AS variant,
    UNIX_MICROS(CAST(x.`exposed_at` AS TIMESTAMP)) AS x_us,
    CAST(x.`country` AS STRING) AS s0,
    GET_JSON_OBJECT(x.`context`, '$.device') AS s1,
    0 AS flagged
  FROM `analytics`.`exposures` AS x
  WHERE
    x.`experiment_id` = 'checkout-one-page'
    AND UNIX_MICROS(CAST(x.`exposed_at` AS TIMESTAMP)) <= 1710460800000000
), units AS (
  SELECT
    unit_id,
    variant,
    x_us,
    s0,
    s1,
    CASE WHEN variant_min <> variant_max OR flagged_any = 1 THEN 1 ELSE 0 END AS multiple
  FROM (
    SELECT
      unit_id,
      variant,
      x_us,
      s0,
      s1,
      ROW_NUMBER() OVER (PARTITION BY unit_id ORDER BY x_us NULLS LAST, variant NULLS LAST) AS exposure_rank,
      MIN(variant) OVER (PARTITION BY unit_id) AS variant_min,
      MAX(variant) OVER (PARTITION BY unit_id) AS variant_max,
      MAX(flagged) OVER (PARTITION BY unit_id) AS flagged_any
    FROM exposure_rows
  ) AS ranked_exposures
  WHERE
    exposure_rank = 1
), unit_values AS (
  SELECT
    u.unit_id,
    u.variant,
    u.x_us,
    u.s0,
    u.s1,
    u.multiple,
    COUNT(*) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us AND e.ts_us < u.x_us + 604800000000) AS e0,
    COUNT(*) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us - 1209600000000 AND e.ts_us < u.x_us) AS e1,
    SUM(e.value) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us AND e.ts_us < u.x_us + 604800000000) AS e2,
    COUNT(*) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us AND e.ts_us < u.x_us + 302400000000) AS e3,
    SUM(e.value) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us) AS e4,
    COUNT(e.value) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us) AS e5,
    COUNT(*) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us) AS e6,
    SUM(e.value) FILTER(WHERE
      e.name = 'purchase' AND e.ts_us >= u.x_us - 1209600000000 AND e.ts_us < u.x_us) AS e7
  FROM units AS u
  LEFT JOIN (
    SELECT
      ev.`user_id` AS unit_id,
      ev.`event_name` AS name,
      CAST(ev.`amount` AS DOUBLE) AS value,
      UNIX_MICROS(CAST(ev.`ts` AS TIMESTAMP)) AS ts_us
    FROM `analytics`.`events` AS ev
    WHERE
      ev.`event_name` IN ('purchase')
      AND UNIX_MICROS(CAST(ev.`ts` AS TIMESTAMP)) <= 1710460800000000
  ) AS e
    ON e.unit_id = u.unit_id AND e.ts_us >= u.x_us - 1209600000000
  GROUP BY
    u.unit_id,
    u.variant,
    u.x_us,
    u.s0,
    u.s1,
    u.multiple
), unit_raw AS (
  SELECT
    v.variant,
    v.s0,
    v.s1,
    (
      CASE WHEN v.x_us >= 1709640000000000 THEN 2 ELSE 1 END
    ) AS phase,
    (
      v.x_us DIV 86400000000
    ) AS day,
    (
      CASE WHEN v.e0 > 0 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END
    ) AS m0_0,
    (
      CASE WHEN v.e1 > 0 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END
    ) AS c0_0,
    COALESCE(v.e2, CAST(0 AS DOUBLE)) AS m1_0,
    CAST(COALESCE(v.e3, 0) AS DOUBLE) AS m2_0,
    (
      CASE WHEN v.e5 > 0 THEN v.e4 / v.e5 END
    ) AS m3_0,
    COALESCE(v.e4, CAST(0 AS DOUBLE)) AS m4_0,
    CAST(COALESCE(v.e6, 0) AS DOUBLE) AS m4_1,
    COALESCE(v.e7, CAST(0 AS DOUBLE)) AS c4_0,
    CAST(COALESCE(v.e1, 0) AS DOUBLE) AS c4_1,
    COALESCE(v.e2, CAST(0 AS DOUBLE)) AS m5_0
  FROM unit_values AS v
  WHERE
    v.multiple = 0
), cap_m1_0 AS (
  SELECT
    MAX(
      CASE
        WHEN rn - 1 <= h_lower AND h_lower < rn
        THEN (
          CASE
            WHEN (
              h_lower - (
                rn - 1
              )
            ) >= 0.5
            THEN COALESCE(x_next, x) - (
              COALESCE(x_next, x) - x
            ) * (
              1 - (
                h_lower - (
                  rn - 1
                )
              )
            )
            ELSE x + (
              COALESCE(x_next, x) - x
            ) * (
              h_lower - (
                rn - 1
              )
            )
          END
        )
      END
    ) AS lower,
    MAX(
      CASE
        WHEN rn - 1 <= h_upper AND h_upper < rn
        THEN (
          CASE
            WHEN (
              h_upper - (
                rn - 1
              )
            ) >= 0.5
            THEN COALESCE(x_next, x) - (
              COALESCE(x_next, x) - x
            ) * (
              1 - (
                h_upper - (
                  rn - 1
                )
              )
            )
            ELSE x + (
              COALESCE(x_next, x) - x
            ) * (
              h_upper - (
                rn - 1
              )
            )
          END
        )
      END
    ) AS upper
  FROM (
    SELECT
      x,
      LEAD(x) OVER (ORDER BY x NULLS LAST) AS x_next,
      ROW_NUMBER() OVER (ORDER BY x NULLS LAST) AS rn,
      CAST(COUNT(*) OVER () - 1 AS DOUBLE) * CAST(0.05 AS DOUBLE) AS h_lower,
      CAST(COUNT(*) OVER () - 1 AS DOUBLE) * CAST(0.95 AS DOUBLE) AS h_upper
    FROM (
      SELECT
        m1_0 AS x
      FROM unit_raw
      WHERE
        NOT m1_0 IS NULL
    ) AS capped_values
  ) AS ranked
), unit_metrics AS (
  SELECT
    variant,
    s0,
    s1,
    phase,
    day,
    m0_0,
    c0_0,
    (
      CASE
        WHEN m1_0 > cap_m1_0.upper
        THEN cap_m1_0.upper
        WHEN m1_0 < cap_m1_0.lower
        THEN cap_m1_0.lower
        ELSE m1_0
      END
    ) AS m1_0,
    m2_0,
    (
      CASE WHEN m3_0 > CAST(80.0 AS DOUBLE) THEN CAST(80.0 AS DOUBLE) ELSE m3_0 END
    ) AS m3_0,
    m4_0,
    m4_1,
    c4_0,
    c4_1,
    m5_0
  FROM unit_raw
  CROSS JOIN cap_m1_0
)
SELECT
  'cell' AS grain,
  variant AS variant,
  s0 AS s0,
  s1 AS s1,
  phase AS phase,
  day AS day,
  CAST(NULL AS BIGINT) AS q_metric,
  CAST(NULL AS BIGINT) AS q_rank,
  CAST(NULL AS DOUBLE) AS q_value,
  COUNT(*) AS units,
  COUNT(*) AS m0_n,
  SUM(m0_0) AS m0_sum,
  SUM(c0_0) AS m0_cov_sum,
  SUM(c0_0 * c0_0) AS m0_cov_sum_sq,
  SUM(m0_0 * c0_0) AS m0_cross_0_0,
  COUNT(*) AS m1_n,
  SUM(m1_0) AS m1_sum,
  SUM(m1_0 * m1_0) AS m1_sum_sq,
  COUNT(*) AS m2_n,
  SUM(m2_0) AS m2_sum,
  SUM(m2_0 * m2_0) AS m2_sum_sq,
  COUNT(m3_0) AS m3_n,
  SUM(m3_0) AS m3_sum,
  SUM(m3_0 * m3_0) AS m3_sum_sq,
  COUNT(*) AS m4_n,
  SUM(m4_0) AS m4_num_sum,
  SUM(m4_0 * m4_0) AS m4_num_sum_sq,
  SUM(m4_1) AS m4_den_sum,
  SUM(m4_1 * m4_1) AS m4_den_sum_sq,
  SUM(m4_0 * m4_1) AS m4_num_den_sum,
  SUM(c4_0) AS m4_cov_num_sum,
  SUM(c4_0 * c4_0) AS m4_cov_num_sum_sq,
  SUM(c4_1) AS m4_cov_den_sum,
  SUM(c4_1 * c4_1) AS m4_cov_den_sum_sq,
  SUM(c4_0 * c4_1) AS m4_cov_num_den_sum,
  SUM(m4_0 * c4_0) AS m4_cross_0_0,
  SUM(m4_0 * c4_1) AS m4_cross_0_1,
  SUM(m4_1 * c4_0) AS m4_cross_1_0,
  SUM(m4_1 * c4_1) AS m4_cross_1_1
FROM unit_metrics
GROUP BY
  variant,
  s0,
  s1,
  phase,
  day
UNION ALL
SELECT
  'multiple' AS grain,
  variant AS variant,
  CAST(NULL AS STRING) AS s0,
  CAST(NULL AS STRING) AS s1,
  CAST(NULL AS BIGINT) AS phase,
  CAST(NULL AS BIGINT) AS day,
  CAST(NULL AS BIGINT) AS q_metric,
  CAST(NULL AS BIGINT) AS q_rank,
  CAST(NULL AS DOUBLE) AS q_value,
  COUNT(*) AS units,
  CAST(NULL AS DOUBLE) AS m0_n,
  CAST(NULL AS DOUBLE) AS m0_sum,
  CAST(NULL AS DOUBLE) AS m0_cov_sum,
  CAST(NULL AS DOUBLE) AS m0_cov_sum_sq,
  CAST(NULL AS DOUBLE) AS m0_cross_0_0,
  CAST(NULL AS DOUBLE) AS m1_n,
  CAST(NULL AS DOUBLE) AS m1_sum,
  CAST(NULL AS DOUBLE) AS m1_sum_sq,
  CAST(NULL AS DOUBLE) AS m2_n,
  CAST(NULL AS DOUBLE) AS m2_sum,
  CAST(NULL AS DOUBLE) AS m2_sum_sq,
  CAST(NULL AS DOUBLE) AS m3_n,
  CAST(NULL AS DOUBLE) AS m3_sum,
  CAST(NULL AS DOUBLE) AS m3_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_n,
  CAST(NULL AS DOUBLE) AS m4_num_sum,
  CAST(NULL AS DOUBLE) AS m4_num_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_den_sum,
  CAST(NULL AS DOUBLE) AS m4_den_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_num_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_num_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_num_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_cov_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_den_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_cov_num_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cross_0_0,
  CAST(NULL AS DOUBLE) AS m4_cross_0_1,
  CAST(NULL AS DOUBLE) AS m4_cross_1_0,
  CAST(NULL AS DOUBLE) AS m4_cross_1_1
FROM units
WHERE
  multiple = 1
GROUP BY
  variant
UNION ALL
SELECT
  'quantile' AS grain,
  variant AS variant,
  CAST(NULL AS STRING) AS s0,
  CAST(NULL AS STRING) AS s1,
  CAST(NULL AS BIGINT) AS phase,
  CAST(NULL AS BIGINT) AS day,
  5 AS q_metric,
  rn AS q_rank,
  x AS q_value,
  n AS units,
  CAST(NULL AS DOUBLE) AS m0_n,
  CAST(NULL AS DOUBLE) AS m0_sum,
  CAST(NULL AS DOUBLE) AS m0_cov_sum,
  CAST(NULL AS DOUBLE) AS m0_cov_sum_sq,
  CAST(NULL AS DOUBLE) AS m0_cross_0_0,
  CAST(NULL AS DOUBLE) AS m1_n,
  CAST(NULL AS DOUBLE) AS m1_sum,
  CAST(NULL AS DOUBLE) AS m1_sum_sq,
  CAST(NULL AS DOUBLE) AS m2_n,
  CAST(NULL AS DOUBLE) AS m2_sum,
  CAST(NULL AS DOUBLE) AS m2_sum_sq,
  CAST(NULL AS DOUBLE) AS m3_n,
  CAST(NULL AS DOUBLE) AS m3_sum,
  CAST(NULL AS DOUBLE) AS m3_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_n,
  CAST(NULL AS DOUBLE) AS m4_num_sum,
  CAST(NULL AS DOUBLE) AS m4_num_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_den_sum,
  CAST(NULL AS DOUBLE) AS m4_den_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_num_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_num_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_num_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_cov_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_den_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_cov_num_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cross_0_0,
  CAST(NULL AS DOUBLE) AS m4_cross_0_1,
  CAST(NULL AS DOUBLE) AS m4_cross_1_0,
  CAST(NULL AS DOUBLE) AS m4_cross_1_1
FROM (
  SELECT
    variant,
    m5_0 AS x,
    ROW_NUMBER() OVER (PARTITION BY variant ORDER BY m5_0 NULLS LAST) AS rn,
    COUNT(*) OVER (PARTITION BY variant) AS n
  FROM unit_raw
) AS ranked_m5
WHERE
  (
    (
      ABS(CAST(rn - 1 AS DOUBLE) - CAST(n - 1 AS DOUBLE) * CAST(0.9 AS DOUBLE)) - 2
    ) <= 0
    OR (
      ABS(CAST(rn - 1 AS DOUBLE) - CAST(n - 1 AS DOUBLE) * CAST(0.9 AS DOUBLE)) - 2
    ) * (
      ABS(CAST(rn - 1 AS DOUBLE) - CAST(n - 1 AS DOUBLE) * CAST(0.9 AS DOUBLE)) - 2
    ) * CAST(n AS DOUBLE) <= CAST(n - 1 AS DOUBLE) * CAST(n - 1 AS DOUBLE) * CAST(0.3457312938624712 AS DOUBLE)
  )
UNION ALL
SELECT
  'quantile_segment' AS grain,
  variant AS variant,
  s0 AS s0,
  s1 AS s1,
  CAST(NULL AS BIGINT) AS phase,
  CAST(NULL AS BIGINT) AS day,
  5 AS q_metric,
  rn AS q_rank,
  x AS q_value,
  n AS units,
  CAST(NULL AS DOUBLE) AS m0_n,
  CAST(NULL AS DOUBLE) AS m0_sum,
  CAST(NULL AS DOUBLE) AS m0_cov_sum,
  CAST(NULL AS DOUBLE) AS m0_cov_sum_sq,
  CAST(NULL AS DOUBLE) AS m0_cross_0_0,
  CAST(NULL AS DOUBLE) AS m1_n,
  CAST(NULL AS DOUBLE) AS m1_sum,
  CAST(NULL AS DOUBLE) AS m1_sum_sq,
  CAST(NULL AS DOUBLE) AS m2_n,
  CAST(NULL AS DOUBLE) AS m2_sum,
  CAST(NULL AS DOUBLE) AS m2_sum_sq,
  CAST(NULL AS DOUBLE) AS m3_n,
  CAST(NULL AS DOUBLE) AS m3_sum,
  CAST(NULL AS DOUBLE) AS m3_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_n,
  CAST(NULL AS DOUBLE) AS m4_num_sum,
  CAST(NULL AS DOUBLE) AS m4_num_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_den_sum,
  CAST(NULL AS DOUBLE) AS m4_den_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_num_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_num_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_num_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_cov_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cov_den_sum_sq,
  CAST(NULL AS DOUBLE) AS m4_cov_num_den_sum,
  CAST(NULL AS DOUBLE) AS m4_cross_0_0,
  CAST(NULL AS DOUBLE) AS m4_cross_0_1,
  CAST(NULL AS DOUBLE) AS m4_cross_1_0,
  CAST(NULL AS DOUBLE) AS m4_cross_1_1
FROM (
  SELECT
    variant,
    s0,
    s1,
    m5_0 AS x,
    ROW_NUMBER() OVER (PARTITION BY variant, s0, s1 ORDER BY m5_0 NULLS LAST) AS rn,
    COUNT(*) OVER (PARTITION BY variant, s0, s1) AS n
  FROM unit_raw
) AS ranked_m5
WHERE
  (
    (
      ABS(CAST(rn - 1 AS DOUBLE) - CAST(n - 1 AS DOUBLE) * CAST(0.9 AS DOUBLE)) - 2
    ) <= 0
    OR (
      ABS(CAST(rn - 1 AS DOUBLE) - CAST(n - 1 AS DOUBLE) * CAST(0.9 AS DOUBLE)) - 2
    ) * (
      ABS(CAST(rn - 1 AS DOUBLE) - CAST(n - 1 AS DOUBLE) * CAST(0.9 AS DOUBLE)) - 2
    ) * CAST(n AS DOUBLE) <= CAST(n - 1 AS DOUBLE) * CAST(n - 1 AS DOUBLE) * CAST(0.3457312938624712 AS DOUBLE)
  )

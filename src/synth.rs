//! Deterministic synthetic marketing data generator: owns the schemas and the pure, in-memory
//! Arrow `RecordBatch` generation (no IO) of the `customers`, `events`, `orders`, `campaigns`,
//! `exposures` and `ground_truth` tables, including the planted mechanisms (churn, campaign
//! uplift, order value) that feature and ML work is tested against.
//!
//! # Usage
//!
//! [`validate`] the [`SynthParams`], then call [`generate_chunk`] for every chunk index in
//! `0..n_chunks(&p)` (chunks are independent and pure, so they may run on threads in parallel) and
//! [`campaigns`] once. Concatenating the chunks in index order gives every per-customer table
//! sorted by `customer_id`, then by time.
//!
//! # Determinism
//!
//! Every random draw comes from a `ChaCha8Rng` whose 32-byte key is derived with splitmix64 from
//! `(seed, id, purpose)`: `id` is the customer id (`0` for the campaign plan) and `purpose` one of
//! four fixed streams (campaign plan, customer profile, customer exposures, customer activity).
//! Nothing depends on hashing, thread scheduling or the clock. So equal params give byte-identical
//! batches, and a customer's rows depend only on `(seed, days, start_date, customer_id)`, never on
//! `chunk_customers` or on the other customers.
//!
//! # Tables
//!
//! Timestamps are `Timestamp(Microsecond, Some("UTC"))`, dates `Date32`, money `Float64` rounded to
//! cents, categoricals plain `Utf8`. Every column is non-null unless marked nullable. Day index
//! `t` is `0` for `start_date`; the window is days `0..days`.
//!
//! ## `customers` (one row per customer)
//! | column | type | notes |
//! | --- | --- | --- |
//! | `customer_id` | Int64 | `1..=customers` |
//! | `signup_date` | Date32 | 25% sign up inside the window (uniform day in `0..days`, active from that day); 75% before `start_date`, `1..=1095` days earlier (truncated exponential, mean 400 days) |
//! | `country` | Utf8 | DE 25%, FR 15%, GB 18%, NL 8%, ES 10%, IT 9%, US 15% |
//! | `acquisition_channel` | Utf8 | organic 30%, paid_search 22%, social 18%, email 10%, referral 8%, affiliate 12% |
//! | `age_band` | Utf8 | 18-24 14%, 25-34 26%, 35-44 22%, 45-54 17%, 55-64 12%, 65+ 9% |
//! | `device` | Utf8 | primary device; P(mobile) by age band 0.75/0.68/0.58/0.48/0.40/0.32, P(tablet) 0.06/0.06/0.08/0.10/0.12/0.14, else desktop |
//! | `consent_email` | Boolean | P by channel (organic, paid_search, social, email, referral, affiliate) 0.55/0.45/0.40/0.90/0.60/0.35 |
//! | `consent_ads` | Boolean | 0.45/0.60/0.65/0.50/0.50/0.55 |
//! | `consent_analytics` | Boolean | 0.75/0.80/0.78/0.82/0.74/0.70 (all three consents ×0.9 for DE) |
//!
//! ## `events` (one row per web/app event)
//! | column | type | notes |
//! | --- | --- | --- |
//! | `event_id` | Int64 | `customer_id * 100_000_000 + k`, `k` = 0-based per-customer event counter (globally unique) |
//! | `customer_id` | Int64 | |
//! | `session_id` | Int64 | `customer_id * 1_000_000 + s`, `s` = 0-based per-customer session counter (globally unique) |
//! | `event_ts` | Timestamp(µs, UTC) | never crosses midnight of the session's day |
//! | `event_type` | Utf8 | `session_start`, `page_view`, `add_to_cart`, `checkout` |
//! | `page` | Utf8 | `/`, `/search`, `/category/women`, `/category/men`, `/category/home`, `/product`, `/deals`, `/blog`, `/account`, `/cart`, `/checkout` |
//! | `device` | Utf8 | session device: the customer's primary device with p 0.85, else one of the other two |
//!
//! A session is `session_start` (landing page), `1 + Geometric` page views (continue p 0.65,
//! at most 26; converting sessions get 2 more), then `add_to_cart` (`/cart`) if it converts or
//! (p 0.25) abandons a cart, then `checkout` (`/checkout`) iff it converts. Events are 3–120 s
//! apart. Every order has exactly one `checkout` event with the same customer and timestamp.
//!
//! ## `orders` (one row per converting session)
//! | column | type | notes |
//! | --- | --- | --- |
//! | `order_id` | Int64 | `customer_id * 1_000_000 + o`, `o` = 0-based per-customer order counter |
//! | `customer_id` | Int64 | |
//! | `order_ts` | Timestamp(µs, UTC) | = the session's `checkout` event ts |
//! | `amount` | Float64 | rounded to cents, ≥ 1.00 |
//! | `items` | Int32 | `clamp(1 + floor(amount / unit_price), 1, 99)`, `unit_price ~ U(25, 65)` |
//! | `returned` | Boolean | p = `0.03 + 0.01 * min(items, 6)` (≈ 6% overall) |
//! | `campaign_id` | Int64, nullable | campaign of the most recent **treatment** exposure with `exposure_ts <= order_ts < exposure_ts + 14 days`, else null (control exposures are never shown, so never attributed) |
//!
//! ## `campaigns` (global, from [`campaigns`])
//! | column | type | notes |
//! | --- | --- | --- |
//! | `campaign_id` | Int64 | `1..=n`, `n = clamp(ceil(days / 20), 3, 100)` (6 for 120 days) |
//! | `name` | Utf8 | e.g. `Spring Launch (email) #2` |
//! | `channel` | Utf8 | `email`, `display`, `social`, `search`, cycling from a seeded offset |
//! | `start_date` | Date32 | campaign `i` starts in the first half of slot `i` of `n` equal slots of the window |
//! | `end_date` | Date32 | inclusive; durations email 1–3 days, display 7–21, social 7–14, search 14–28, clipped to the window |
//!
//! ## `exposures` (one row per targeted customer and campaign)
//! | column | type | notes |
//! | --- | --- | --- |
//! | `customer_id` | Int64 | |
//! | `campaign_id` | Int64 | |
//! | `exposure_ts` | Timestamp(µs, UTC) | uniform day in `[max(start, signup), end]`; email 07:00–10:00, other channels any time |
//! | `group` | Utf8 | `treatment` (p 0.8) or `control` (p 0.2), random per (customer, campaign); control rows are the holdout: the time they *would* have been exposed |
//! | `channel` | Utf8 | the campaign's channel |
//!
//! Eligibility: email campaigns need `consent_email`, the others `consent_ads`, and
//! `signup_date <= end_date`. Eligible customers are targeted with the campaign's audience share
//! (uniform in 0.5–0.9 per campaign). Churned customers can still be targeted (the marketer
//! does not know they churned). Rows are sorted by customer, then `exposure_ts`, then campaign.
//!
//! ## `ground_truth` (one row per customer; the latent variables)
//! | column | type | notes |
//! | --- | --- | --- |
//! | `customer_id` | Int64 | |
//! | `engagement` | Float64 | baseline sessions/day |
//! | `trend` | Float64 | log change of the session rate over the whole window |
//! | `churn_day` | Date32, nullable | first day with no activity ever after; null if not churned within the window |
//! | `uplift_segment` | Boolean | `age_band = '25-34' AND device = 'mobile'` (≈ 18% of customers) |
//! | `base_value` | Float64 | latent mean order value at tenure 0 |
//!
//! # Ground truth
//!
//! Exactly these mechanisms are planted; everything observable (events, orders, exposures) is
//! produced by them, so labels computed from the data (e.g. "no order in the 60 days after a
//! snapshot") follow from them.
//!
//! 1. **Engagement**: `engagement = clamp(0.25 * exp(e_ch + 0.8 Z), 0.005, 4.0)`, `Z ~ N(0,1)`,
//!    channel effect `e_ch` (organic, paid_search, social, email, referral, affiliate) =
//!    +0.10/−0.05/−0.15/+0.20/+0.15/−0.20. Median ≈ 0.25 sessions/day.
//! 2. **Trend**: 20% declining `U(−2.5, −0.7)`, 65% flat `N(0, 0.15)`, 15% rising `U(0.3, 1.0)`.
//! 3. **Sessions**: on each active day `t`, sessions `~ Poisson(engagement × exp(trend × t / days)
//!    × w[weekday])` (capped at 60), `w` Mon..Sun = 0.92, 0.95, 0.97, 1.00, 1.06, 1.12, 0.98.
//!    In-window signups have at least one session on their signup day. Session start hours follow
//!    a fixed diurnal profile (evening peak ≈ 19–20 h UTC).
//! 4. **Churn**: at the start of each active day (not the signup day of an in-window signup)
//!    the customer churns with probability
//!    `h = min(0.25, 0.0025 * (0.3 + 2.0 exp(−A / 0.25)) * (0.5 + 1.5 exp(−O / 0.02)) * exp(−0.8 trend))`
//!    where `A` is recent activity, an EWMA of daily session counts (`A ← 0.9 A + 0.1 n`), and
//!    `O` is frequency, an EWMA of daily order counts (`O ← 0.97 O + 0.03 m`), both initialised
//!    at their expected values on the customer's first active day. The churn day is that day:
//!    no events, orders or sessions on or after it. So churn is driven by low recent activity
//!    (recency), low order frequency and a negative trend; with the defaults ≈ 30% of customers
//!    churn within a 120-day window.
//! 5. **Conversion**: each session converts (becomes an order) with probability
//!    `sigmoid(−2.44 + 0.4 ln(engagement / 0.25) + 1.2 * [uplift_segment AND treatment exposure active])`
//!    (≈ 8% at median engagement). A treatment exposure is active from `exposure_ts` for 14 days
//!    (compared with the session start). The uplift is real **only** in `uplift_segment`
//!    (`age_band = '25-34' AND device = 'mobile'`): outside it the effect is exactly zero, and
//!    control exposures have no effect anywhere. Exposure does not change session rates.
//! 6. **Value**: `base_value = clamp(55 * exp(v_ch + v_age + 0.45 Z), 5, 2000)` with channel
//!    effects +0.05/0.00/−0.15/+0.10/+0.15/−0.10 (same channel order as above) and age effects
//!    (18-24 .. 65+) −0.30/−0.05/+0.10/+0.20/+0.15/+0.05. Order
//!    `amount = base_value * exp(0.35 Z − 0.35²/2) * (1 + 0.08 * tenure_years)` (mean-preserving
//!    lognormal noise, +8% per year since `signup_date`), rounded to cents, at least 1.00.
//! 7. **Returns**: `returned ~ Bernoulli(0.03 + 0.01 * min(items, 6))`.
//!
//! Customers who signed up before `start_date` have no observed pre-window history; all of them
//! are active at `start_date` (the customer table is the active base plus new signups).

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

// ---------------------------------------------------------------------------------------------
// Public constants
// ---------------------------------------------------------------------------------------------

/// `event_id = customer_id * EVENT_ID_STRIDE + per-customer event counter`.
pub const EVENT_ID_STRIDE: i64 = 100_000_000;
/// `session_id = customer_id * SESSION_ID_STRIDE + per-customer session counter`.
pub const SESSION_ID_STRIDE: i64 = 1_000_000;
/// `order_id = customer_id * ORDER_ID_STRIDE + per-customer order counter`.
pub const ORDER_ID_STRIDE: i64 = 1_000_000;
/// Largest supported `customers` (keeps `event_id` inside `i64`).
pub const MAX_CUSTOMERS: u64 = 10_000_000_000;
/// Largest supported `days`.
pub const MAX_DAYS: u32 = 3650;
/// Orders are attributed to a treatment exposure at most this many days old.
pub const ATTRIBUTION_WINDOW_DAYS: i64 = 14;
/// A treatment exposure raises conversion (in the uplift segment) for this many days.
pub const TREATMENT_EFFECT_DAYS: i64 = 14;
/// Share of targeted customers assigned to `treatment` (the rest are `control`).
pub const TREATMENT_SHARE: f64 = 0.8;
/// Default customers per chunk.
pub const DEFAULT_CHUNK_CUSTOMERS: u64 = 20_000;

// ---------------------------------------------------------------------------------------------
// Params, tables, errors
// ---------------------------------------------------------------------------------------------

/// Parameters of one synthetic dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthParams {
    /// Number of customers (ids `1..=customers`).
    pub customers: u64,
    /// Length of the simulated window in days (`1..=3650`).
    pub days: u32,
    /// First day of the window (day index 0).
    pub start_date: NaiveDate,
    /// Master seed.
    pub seed: u64,
    /// Customers per chunk (does not change the data, only how it is split).
    pub chunk_customers: u64,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            customers: 2_000,
            days: 120,
            start_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
            seed: 42,
            chunk_customers: DEFAULT_CHUNK_CUSTOMERS,
        }
    }
}

/// The generated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SynthTable {
    Customers,
    Events,
    Orders,
    Campaigns,
    Exposures,
    GroundTruth,
}

impl SynthTable {
    /// Table name (`customers`, `events`, `orders`, `campaigns`, `exposures`, `ground_truth`).
    pub fn name(&self) -> &'static str {
        match self {
            SynthTable::Customers => "customers",
            SynthTable::Events => "events",
            SynthTable::Orders => "orders",
            SynthTable::Campaigns => "campaigns",
            SynthTable::Exposures => "exposures",
            SynthTable::GroundTruth => "ground_truth",
        }
    }

    /// All tables, in a fixed order.
    pub fn all() -> &'static [SynthTable] {
        &[
            SynthTable::Customers,
            SynthTable::Events,
            SynthTable::Orders,
            SynthTable::Campaigns,
            SynthTable::Exposures,
            SynthTable::GroundTruth,
        ]
    }

    /// Inverse of [`SynthTable::name`].
    pub fn from_name(name: &str) -> Option<SynthTable> {
        SynthTable::all().iter().copied().find(|t| t.name() == name)
    }

    /// True for the tables produced per chunk by [`generate_chunk`]; false for `campaigns`,
    /// which is global ([`campaigns`]).
    pub fn is_per_chunk(&self) -> bool {
        !matches!(self, SynthTable::Campaigns)
    }
}

impl std::fmt::Display for SynthTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A parameter is out of range.
    #[error("invalid synth parameter `{param}`: {message}")]
    InvalidParam {
        param: &'static str,
        message: String,
    },
    /// `chunk_idx >= n_chunks`.
    #[error("synth chunk index {chunk_idx} is out of range: there are {n_chunks} chunks")]
    ChunkOutOfRange { chunk_idx: u64, n_chunks: u64 },
    /// A string column of one chunk would exceed Arrow's 2 GiB `Utf8` limit.
    #[error(
        "synth chunk too large: column `{column}` would hold {bytes} bytes (limit 2 GiB); lower `chunk_customers`"
    )]
    ChunkTooLarge { column: &'static str, bytes: usize },
    /// Arrow rejected a batch (should not happen with the fixed schemas).
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// The per-chunk tables for a contiguous range of customers.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub customers: RecordBatch,
    pub events: RecordBatch,
    pub orders: RecordBatch,
    pub exposures: RecordBatch,
    pub ground_truth: RecordBatch,
}

impl Chunk {
    /// The batch of `table`, or `None` for `campaigns` (not per chunk).
    pub fn get(&self, table: SynthTable) -> Option<&RecordBatch> {
        match table {
            SynthTable::Customers => Some(&self.customers),
            SynthTable::Events => Some(&self.events),
            SynthTable::Orders => Some(&self.orders),
            SynthTable::Exposures => Some(&self.exposures),
            SynthTable::GroundTruth => Some(&self.ground_truth),
            SynthTable::Campaigns => None,
        }
    }

    /// Total rows over all batches of the chunk.
    pub fn num_rows(&self) -> usize {
        self.customers.num_rows()
            + self.events.num_rows()
            + self.orders.num_rows()
            + self.exposures.num_rows()
            + self.ground_truth.num_rows()
    }
}

/// Checks the parameters: `customers` in `1..=10^10`, `days` in `1..=3650`,
/// `chunk_customers >= 1`, `start_date` in 1900-01-01..=2199-12-31.
pub fn validate(p: &SynthParams) -> Result<(), SynthError> {
    if p.customers < 1 || p.customers > MAX_CUSTOMERS {
        return Err(SynthError::InvalidParam {
            param: "customers",
            message: format!("must be in 1..={MAX_CUSTOMERS} (got {})", p.customers),
        });
    }
    if p.days < 1 || p.days > MAX_DAYS {
        return Err(SynthError::InvalidParam {
            param: "days",
            message: format!("must be in 1..={MAX_DAYS} (got {})", p.days),
        });
    }
    if p.chunk_customers < 1 {
        return Err(SynthError::InvalidParam {
            param: "chunk_customers",
            message: format!("must be >= 1 (got {})", p.chunk_customers),
        });
    }
    if !(1900..=2199).contains(&p.start_date.year()) {
        return Err(SynthError::InvalidParam {
            param: "start_date",
            message: format!(
                "must be between 1900-01-01 and 2199-12-31 (got {})",
                p.start_date
            ),
        });
    }
    Ok(())
}

/// Number of chunks: `ceil(customers / chunk_customers)` (0 if `chunk_customers == 0`).
pub fn n_chunks(p: &SynthParams) -> u64 {
    if p.chunk_customers == 0 {
        0
    } else {
        p.customers.div_ceil(p.chunk_customers)
    }
}

/// Customer ids covered by chunk `chunk_idx`, or `None` if out of range.
pub fn chunk_customer_range(
    p: &SynthParams,
    chunk_idx: u64,
) -> Option<std::ops::RangeInclusive<u64>> {
    if chunk_idx >= n_chunks(p) {
        return None;
    }
    let first = chunk_idx * p.chunk_customers + 1;
    let last = first.saturating_add(p.chunk_customers - 1).min(p.customers);
    Some(first..=last)
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

const TZ: &str = "UTC";

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TZ.into()))
}

static SCHEMAS: LazyLock<[SchemaRef; 6]> = LazyLock::new(|| {
    let f = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    [
        Arc::new(Schema::new(vec![
            f("customer_id", DataType::Int64, false),
            f("signup_date", DataType::Date32, false),
            f("country", DataType::Utf8, false),
            f("acquisition_channel", DataType::Utf8, false),
            f("age_band", DataType::Utf8, false),
            f("device", DataType::Utf8, false),
            f("consent_email", DataType::Boolean, false),
            f("consent_ads", DataType::Boolean, false),
            f("consent_analytics", DataType::Boolean, false),
        ])),
        Arc::new(Schema::new(vec![
            f("event_id", DataType::Int64, false),
            f("customer_id", DataType::Int64, false),
            f("session_id", DataType::Int64, false),
            f("event_ts", ts_type(), false),
            f("event_type", DataType::Utf8, false),
            f("page", DataType::Utf8, false),
            f("device", DataType::Utf8, false),
        ])),
        Arc::new(Schema::new(vec![
            f("order_id", DataType::Int64, false),
            f("customer_id", DataType::Int64, false),
            f("order_ts", ts_type(), false),
            f("amount", DataType::Float64, false),
            f("items", DataType::Int32, false),
            f("returned", DataType::Boolean, false),
            f("campaign_id", DataType::Int64, true),
        ])),
        Arc::new(Schema::new(vec![
            f("campaign_id", DataType::Int64, false),
            f("name", DataType::Utf8, false),
            f("channel", DataType::Utf8, false),
            f("start_date", DataType::Date32, false),
            f("end_date", DataType::Date32, false),
        ])),
        Arc::new(Schema::new(vec![
            f("customer_id", DataType::Int64, false),
            f("campaign_id", DataType::Int64, false),
            f("exposure_ts", ts_type(), false),
            f("group", DataType::Utf8, false),
            f("channel", DataType::Utf8, false),
        ])),
        Arc::new(Schema::new(vec![
            f("customer_id", DataType::Int64, false),
            f("engagement", DataType::Float64, false),
            f("trend", DataType::Float64, false),
            f("churn_day", DataType::Date32, true),
            f("uplift_segment", DataType::Boolean, false),
            f("base_value", DataType::Float64, false),
        ])),
    ]
});

/// Arrow schema of `table` (shared, cheap to clone).
pub fn schema(table: SynthTable) -> SchemaRef {
    let i = match table {
        SynthTable::Customers => 0,
        SynthTable::Events => 1,
        SynthTable::Orders => 2,
        SynthTable::Campaigns => 3,
        SynthTable::Exposures => 4,
        SynthTable::GroundTruth => 5,
    };
    Arc::clone(&SCHEMAS[i])
}

// ---------------------------------------------------------------------------------------------
// Model constants (documented in the module docs; keep in sync)
// ---------------------------------------------------------------------------------------------

const COUNTRIES: [&str; 7] = ["DE", "FR", "GB", "NL", "ES", "IT", "US"];
const COUNTRY_W: [f64; 7] = [0.25, 0.15, 0.18, 0.08, 0.10, 0.09, 0.15];
const COUNTRY_DE: usize = 0;
const DE_CONSENT_FACTOR: f64 = 0.9;

const ACQ_CHANNELS: [&str; 6] = [
    "organic",
    "paid_search",
    "social",
    "email",
    "referral",
    "affiliate",
];
const ACQ_CHANNEL_W: [f64; 6] = [0.30, 0.22, 0.18, 0.10, 0.08, 0.12];
const CONSENT_EMAIL_BY_CH: [f64; 6] = [0.55, 0.45, 0.40, 0.90, 0.60, 0.35];
const CONSENT_ADS_BY_CH: [f64; 6] = [0.45, 0.60, 0.65, 0.50, 0.50, 0.55];
const CONSENT_ANALYTICS_BY_CH: [f64; 6] = [0.75, 0.80, 0.78, 0.82, 0.74, 0.70];
const ENGAGEMENT_CH_EFFECT: [f64; 6] = [0.10, -0.05, -0.15, 0.20, 0.15, -0.20];
const VALUE_CH_EFFECT: [f64; 6] = [0.05, 0.0, -0.15, 0.10, 0.15, -0.10];

const AGE_BANDS: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
const AGE_W: [f64; 6] = [0.14, 0.26, 0.22, 0.17, 0.12, 0.09];
const VALUE_AGE_EFFECT: [f64; 6] = [-0.30, -0.05, 0.10, 0.20, 0.15, 0.05];
const MOBILE_BY_AGE: [f64; 6] = [0.75, 0.68, 0.58, 0.48, 0.40, 0.32];
const TABLET_BY_AGE: [f64; 6] = [0.06, 0.06, 0.08, 0.10, 0.12, 0.14];
const AGE_25_34: u8 = 1;

const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const DEV_MOBILE: u8 = 0;
const DEV_DESKTOP: u8 = 1;
const DEV_TABLET: u8 = 2;
const PRIMARY_DEVICE_SHARE: f64 = 0.85;

const NEW_SIGNUP_SHARE: f64 = 0.25;
const PRE_TENURE_MAX_DAYS: f64 = 1095.0;
const PRE_TENURE_MEAN_DAYS: f64 = 400.0;

const ENGAGEMENT_MEDIAN: f64 = 0.25;
const ENGAGEMENT_SIGMA: f64 = 0.8;
const ENGAGEMENT_MIN: f64 = 0.005;
const ENGAGEMENT_MAX: f64 = 4.0;

const TREND_DECLINING_SHARE: f64 = 0.20;
const TREND_FLAT_SHARE: f64 = 0.65;

const BASE_VALUE_MEDIAN: f64 = 55.0;
const BASE_VALUE_SIGMA: f64 = 0.45;
const AMOUNT_SIGMA: f64 = 0.35;
const TENURE_VALUE_GROWTH: f64 = 0.08;

const WEEKDAY_FACTOR: [f64; 7] = [0.92, 0.95, 0.97, 1.00, 1.06, 1.12, 0.98];
const HOUR_WEIGHTS: [f64; 24] = [
    0.8, 0.5, 0.3, 0.25, 0.25, 0.4, 0.9, 1.8, 2.6, 3.0, 3.2, 3.4, 3.8, 3.6, 3.4, 3.4, 3.6, 4.0,
    4.8, 5.4, 5.6, 4.8, 3.4, 1.8,
];
const MAX_SESSIONS_PER_DAY: u32 = 60;

const HAZARD_BASE: f64 = 0.0025;
const HAZARD_MAX: f64 = 0.25;
const ACTIVITY_DECAY: f64 = 0.9;
const ORDER_FREQ_DECAY: f64 = 0.97;

const CONV_INTERCEPT: f64 = -2.44;
const CONV_ENGAGEMENT: f64 = 0.4;
const CONV_UPLIFT: f64 = 1.2;

const PV_CONTINUE: f64 = 0.65;
const PV_MAX_EXTRA: u32 = 25;
const CONVERTING_EXTRA_PV: u32 = 2;
const CART_ABANDON_P: f64 = 0.25;

const EVENT_TYPES: [&str; 4] = ["session_start", "page_view", "add_to_cart", "checkout"];
const ET_SESSION_START: u8 = 0;
const ET_PAGE_VIEW: u8 = 1;
const ET_ADD_TO_CART: u8 = 2;
const ET_CHECKOUT: u8 = 3;

const PAGES: [&str; 11] = [
    "/",
    "/search",
    "/category/women",
    "/category/men",
    "/category/home",
    "/product",
    "/deals",
    "/blog",
    "/account",
    "/cart",
    "/checkout",
];
const PAGE_CART: u8 = 9;
const PAGE_CHECKOUT: u8 = 10;
/// Page-view page distribution as a 16-slot lookup table (indices into `PAGES`).
const PV_PAGE_LUT: [u8; 16] = [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 5, 5, 6, 7, 8];
/// Landing page distribution as a 16-slot lookup table.
const LANDING_LUT: [u8; 16] = [0, 0, 0, 0, 0, 0, 1, 2, 2, 3, 3, 4, 5, 5, 6, 7];

const CAMPAIGN_CHANNELS: [&str; 4] = ["email", "display", "social", "search"];
const CC_EMAIL: u8 = 0;
const CAMPAIGN_THEMES: [&str; 8] = [
    "Winter Sale",
    "Spring Launch",
    "Loyalty Boost",
    "Free Shipping",
    "New Arrivals",
    "Flash Sale",
    "Win-Back",
    "Bundle Deal",
];

const GROUPS: [&str; 2] = ["control", "treatment"];

const US_PER_SEC: i64 = 1_000_000;
const US_PER_HOUR: i64 = 3_600 * US_PER_SEC;
const US_PER_DAY: i64 = 24 * US_PER_HOUR;

const STREAM_CAMPAIGNS: u64 = 1;
const STREAM_PROFILE: u64 = 2;
const STREAM_EXPOSURE: u64 = 3;
const STREAM_ACTIVITY: u64 = 4;

// ---------------------------------------------------------------------------------------------
// Randomness helpers
// ---------------------------------------------------------------------------------------------

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG of one `(seed, id, purpose)` stream.
fn stream_rng(seed: u64, id: u64, purpose: u64) -> ChaCha8Rng {
    let s = splitmix64(splitmix64(splitmix64(seed) ^ id) ^ purpose);
    let mut key = [0u8; 32];
    for (i, part) in key.chunks_exact_mut(8).enumerate() {
        let word = splitmix64(s ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        part.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

#[inline]
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

/// 32 random bits as a uniform in `[0, 1)`.
#[inline]
fn unit32(bits: u64) -> f64 {
    (bits & 0xFFFF_FFFF) as f64 * (1.0 / 4_294_967_296.0)
}

/// `floor(bits32 * n / 2^32)`: maps 32 random bits onto `0..n`.
#[inline]
fn scale32(bits: u64, n: u64) -> u64 {
    ((bits & 0xFFFF_FFFF) * n) >> 32
}

#[inline]
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample::<f64, _>(StandardNormal)
}

fn pick(u: f64, weights: &[f64]) -> usize {
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w;
        if u < acc {
            return i;
        }
    }
    weights.len() - 1
}

/// Poisson draw by inverse transform (one uniform), truncated at `MAX_SESSIONS_PER_DAY`.
#[inline]
fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u32 {
    let u = unit(rng);
    let mut p = (-lambda).exp();
    let mut cdf = p;
    let mut k = 0u32;
    while u > cdf && k < MAX_SESSIONS_PER_DAY {
        k += 1;
        p *= lambda / f64::from(k);
        cdf += p;
    }
    k
}

#[inline]
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[inline]
fn round_cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------------
// Campaign plan
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct CampaignPlan {
    id: i64,
    name: String,
    channel: u8,
    start_day: u32,
    end_day: u32,
    audience_share: f64,
}

fn campaign_plan(p: &SynthParams) -> Vec<CampaignPlan> {
    let mut rng = stream_rng(p.seed, 0, STREAM_CAMPAIGNS);
    let days = p.days.max(1);
    let n = days.div_ceil(20).clamp(3, 100);
    let offset = rng.random_range(0..CAMPAIGN_CHANNELS.len());
    let slot = f64::from(days) / f64::from(n);
    (0..n)
        .map(|i| {
            let channel = ((i as usize + offset) % CAMPAIGN_CHANNELS.len()) as u8;
            let start = (f64::from(i) * slot + unit(&mut rng) * slot * 0.5) as u32;
            let start_day = start.min(days - 1);
            let duration: u32 = match channel {
                0 => rng.random_range(1..=3),
                1 => rng.random_range(7..=21),
                2 => rng.random_range(7..=14),
                _ => rng.random_range(14..=28),
            };
            let end_day = (start_day + duration - 1).min(days - 1);
            let audience_share = 0.5 + 0.4 * unit(&mut rng);
            let theme = CAMPAIGN_THEMES[rng.random_range(0..CAMPAIGN_THEMES.len())];
            CampaignPlan {
                id: i64::from(i) + 1,
                name: format!(
                    "{theme} ({}) #{}",
                    CAMPAIGN_CHANNELS[channel as usize],
                    i + 1
                ),
                channel,
                start_day,
                end_day,
                audience_share,
            }
        })
        .collect()
}

fn epoch_day(d: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days()
}

/// The global `campaigns` table (same for every chunk).
pub fn campaigns(p: &SynthParams) -> Result<RecordBatch, SynthError> {
    validate(p)?;
    let plan = campaign_plan(p);
    let e0 = epoch_day(p.start_date);
    let ids: Vec<i64> = plan.iter().map(|c| c.id).collect();
    let names: Vec<&str> = plan.iter().map(|c| c.name.as_str()).collect();
    let channels: Vec<&str> = plan
        .iter()
        .map(|c| CAMPAIGN_CHANNELS[c.channel as usize])
        .collect();
    let starts: Vec<i32> = plan
        .iter()
        .map(|c| (e0 + i64::from(c.start_day)) as i32)
        .collect();
    let ends: Vec<i32> = plan
        .iter()
        .map(|c| (e0 + i64::from(c.end_day)) as i32)
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(channels)),
        Arc::new(Date32Array::from(starts)),
        Arc::new(Date32Array::from(ends)),
    ];
    Ok(RecordBatch::try_new(schema(SynthTable::Campaigns), cols)?)
}

// ---------------------------------------------------------------------------------------------
// Customer simulation
// ---------------------------------------------------------------------------------------------

/// Everything fixed for one dataset (shared by all customers of a chunk).
struct Ctx {
    seed: u64,
    days: u32,
    /// Days since the Unix epoch of `start_date`.
    e0: i64,
    /// Weekday of `start_date`, Monday = 0.
    wd0: u32,
    campaigns: Vec<CampaignPlan>,
    hour_cum: [f64; 24],
}

impl Ctx {
    fn new(p: &SynthParams) -> Self {
        let total: f64 = HOUR_WEIGHTS.iter().sum();
        let mut hour_cum = [0.0; 24];
        let mut acc = 0.0;
        for (c, w) in hour_cum.iter_mut().zip(HOUR_WEIGHTS) {
            acc += w / total;
            *c = acc;
        }
        Self {
            seed: p.seed,
            days: p.days,
            e0: epoch_day(p.start_date),
            wd0: p.start_date.weekday().num_days_from_monday(),
            campaigns: campaign_plan(p),
            hour_cum,
        }
    }

    #[inline]
    fn day_start_us(&self, day: i64) -> i64 {
        (self.e0 + day) * US_PER_DAY
    }
}

/// Latent and observed attributes of one customer.
#[derive(Debug, Clone)]
struct Profile {
    id: u64,
    /// Day index of signup (negative: before `start_date`).
    signup_day: i32,
    country: u8,
    channel: u8,
    age: u8,
    device: u8,
    consent_email: bool,
    consent_ads: bool,
    consent_analytics: bool,
    engagement: f64,
    trend: f64,
    base_value: f64,
    uplift: bool,
}

fn draw_profile(ctx: &Ctx, id: u64) -> Profile {
    let mut rng = stream_rng(ctx.seed, id, STREAM_PROFILE);
    let country = pick(unit(&mut rng), &COUNTRY_W);
    let channel = pick(unit(&mut rng), &ACQ_CHANNEL_W);
    let age = pick(unit(&mut rng), &AGE_W);
    let u_dev = unit(&mut rng);
    let device = if u_dev < MOBILE_BY_AGE[age] {
        DEV_MOBILE
    } else if u_dev < MOBILE_BY_AGE[age] + TABLET_BY_AGE[age] {
        DEV_TABLET
    } else {
        DEV_DESKTOP
    };
    let cf = if country == COUNTRY_DE {
        DE_CONSENT_FACTOR
    } else {
        1.0
    };
    let consent_email = unit(&mut rng) < CONSENT_EMAIL_BY_CH[channel] * cf;
    let consent_ads = unit(&mut rng) < CONSENT_ADS_BY_CH[channel] * cf;
    let consent_analytics = unit(&mut rng) < CONSENT_ANALYTICS_BY_CH[channel] * cf;

    let u_new = unit(&mut rng);
    let u_when = unit(&mut rng);
    let signup_day = if u_new < NEW_SIGNUP_SHARE {
        ((u_when * f64::from(ctx.days)) as i32).min(ctx.days as i32 - 1)
    } else {
        // Truncated exponential on (0, PRE_TENURE_MAX_DAYS], shifted to 1..=1095 days before.
        let tail = 1.0 - (-PRE_TENURE_MAX_DAYS / PRE_TENURE_MEAN_DAYS).exp();
        let t = -PRE_TENURE_MEAN_DAYS * (1.0 - u_when * tail).ln();
        -((t as i32).clamp(0, PRE_TENURE_MAX_DAYS as i32 - 1) + 1)
    };

    let z_eng = normal(&mut rng);
    let engagement = (ENGAGEMENT_MEDIAN
        * (ENGAGEMENT_CH_EFFECT[channel] + ENGAGEMENT_SIGMA * z_eng).exp())
    .clamp(ENGAGEMENT_MIN, ENGAGEMENT_MAX);

    let u_trend = unit(&mut rng);
    let u_trend2 = unit(&mut rng);
    let z_trend = normal(&mut rng);
    let trend = if u_trend < TREND_DECLINING_SHARE {
        -0.7 - 1.8 * u_trend2
    } else if u_trend < TREND_DECLINING_SHARE + TREND_FLAT_SHARE {
        0.15 * z_trend
    } else {
        0.3 + 0.7 * u_trend2
    };

    let z_val = normal(&mut rng);
    let base_value = (BASE_VALUE_MEDIAN
        * (VALUE_CH_EFFECT[channel] + VALUE_AGE_EFFECT[age] + BASE_VALUE_SIGMA * z_val).exp())
    .clamp(5.0, 2000.0);

    let age = age as u8;
    Profile {
        id,
        signup_day,
        country: country as u8,
        channel: channel as u8,
        age,
        device,
        consent_email,
        consent_ads,
        consent_analytics,
        engagement,
        trend,
        base_value,
        uplift: age == AGE_25_34 && device == DEV_MOBILE,
    }
}

#[derive(Debug, Clone, Copy)]
struct Exposure {
    ts: i64,
    campaign: usize,
    treatment: bool,
}

/// Draws the customer's exposures (sorted by time, then campaign) into `out`.
fn draw_exposures(ctx: &Ctx, prof: &Profile, out: &mut Vec<Exposure>) {
    out.clear();
    let mut rng = stream_rng(ctx.seed, prof.id, STREAM_EXPOSURE);
    for (ci, c) in ctx.campaigns.iter().enumerate() {
        // Always four draws per campaign so eligibility never shifts later campaigns.
        let u_target = unit(&mut rng);
        let u_group = unit(&mut rng);
        let u_day = unit(&mut rng);
        let u_time = unit(&mut rng);
        let consent = if c.channel == CC_EMAIL {
            prof.consent_email
        } else {
            prof.consent_ads
        };
        let first = i64::from(c.start_day).max(i64::from(prof.signup_day));
        let last = i64::from(c.end_day);
        if !consent || first > last || u_target >= c.audience_share {
            continue;
        }
        let day = (first + (u_day * (last - first + 1) as f64) as i64).min(last);
        let tod = if c.channel == CC_EMAIL {
            7 * US_PER_HOUR + (u_time * (3 * US_PER_HOUR) as f64) as i64
        } else {
            (u_time * US_PER_DAY as f64) as i64
        };
        out.push(Exposure {
            ts: ctx.day_start_us(day) + tod.min(US_PER_DAY - 1),
            campaign: ci,
            treatment: u_group < TREATMENT_SHARE,
        });
    }
    out.sort_by_key(|e| (e.ts, e.campaign));
}

/// Most recent treatment exposure `e` with `e.ts <= ts < e.ts + window`.
#[inline]
fn active_treatment(exps: &[Exposure], ts: i64, window_us: i64) -> Option<&Exposure> {
    let end = exps.partition_point(|e| e.ts <= ts);
    exps[..end]
        .iter()
        .rev()
        .take_while(|e| ts - e.ts < window_us)
        .find(|e| e.treatment)
}

/// Column buffers of one chunk.
#[derive(Default)]
struct Buffers {
    // customers + ground truth
    c_id: Vec<i64>,
    c_signup: Vec<i32>,
    c_country: Vec<u8>,
    c_channel: Vec<u8>,
    c_age: Vec<u8>,
    c_device: Vec<u8>,
    c_consent_email: Vec<bool>,
    c_consent_ads: Vec<bool>,
    c_consent_analytics: Vec<bool>,
    g_engagement: Vec<f64>,
    g_trend: Vec<f64>,
    g_churn: Vec<Option<i32>>,
    g_uplift: Vec<bool>,
    g_base_value: Vec<f64>,
    // events
    e_id: Vec<i64>,
    e_customer: Vec<i64>,
    e_session: Vec<i64>,
    e_ts: Vec<i64>,
    e_type: Vec<u8>,
    e_page: Vec<u8>,
    e_device: Vec<u8>,
    // orders
    o_id: Vec<i64>,
    o_customer: Vec<i64>,
    o_ts: Vec<i64>,
    o_amount: Vec<f64>,
    o_items: Vec<i32>,
    o_returned: Vec<bool>,
    o_campaign: Vec<Option<i64>>,
    // exposures
    x_customer: Vec<i64>,
    x_campaign: Vec<i64>,
    x_ts: Vec<i64>,
    x_group: Vec<u8>,
    x_channel: Vec<u8>,
}

impl Buffers {
    fn with_capacity(customers: usize, events: usize, orders: usize, exposures: usize) -> Self {
        Self {
            c_id: Vec::with_capacity(customers),
            c_signup: Vec::with_capacity(customers),
            c_country: Vec::with_capacity(customers),
            c_channel: Vec::with_capacity(customers),
            c_age: Vec::with_capacity(customers),
            c_device: Vec::with_capacity(customers),
            c_consent_email: Vec::with_capacity(customers),
            c_consent_ads: Vec::with_capacity(customers),
            c_consent_analytics: Vec::with_capacity(customers),
            g_engagement: Vec::with_capacity(customers),
            g_trend: Vec::with_capacity(customers),
            g_churn: Vec::with_capacity(customers),
            g_uplift: Vec::with_capacity(customers),
            g_base_value: Vec::with_capacity(customers),
            e_id: Vec::with_capacity(events),
            e_customer: Vec::with_capacity(events),
            e_session: Vec::with_capacity(events),
            e_ts: Vec::with_capacity(events),
            e_type: Vec::with_capacity(events),
            e_page: Vec::with_capacity(events),
            e_device: Vec::with_capacity(events),
            o_id: Vec::with_capacity(orders),
            o_customer: Vec::with_capacity(orders),
            o_ts: Vec::with_capacity(orders),
            o_amount: Vec::with_capacity(orders),
            o_items: Vec::with_capacity(orders),
            o_returned: Vec::with_capacity(orders),
            o_campaign: Vec::with_capacity(orders),
            x_customer: Vec::with_capacity(exposures),
            x_campaign: Vec::with_capacity(exposures),
            x_ts: Vec::with_capacity(exposures),
            x_group: Vec::with_capacity(exposures),
            x_channel: Vec::with_capacity(exposures),
        }
    }
}

/// Per-customer event writer (owns the id counters).
struct EventWriter<'a> {
    buf: &'a mut Buffers,
    cid: i64,
    next_event: i64,
}

impl EventWriter<'_> {
    #[inline]
    fn push(&mut self, session: i64, ts: i64, etype: u8, page: u8, device: u8) {
        let b = &mut *self.buf;
        b.e_id.push(self.cid * EVENT_ID_STRIDE + self.next_event);
        b.e_customer.push(self.cid);
        b.e_session.push(session);
        b.e_ts.push(ts);
        b.e_type.push(etype);
        b.e_page.push(page);
        b.e_device.push(device);
        self.next_event += 1;
    }
}

/// Gap between two events of a session, 3 s..120 s, from 32 random bits.
#[inline]
fn event_gap_us(bits: u64) -> i64 {
    3 * US_PER_SEC + scale32(bits, 117 * US_PER_SEC as u64) as i64
}

/// Simulates one customer's activity over the window; returns the churn day index.
fn simulate_customer(
    ctx: &Ctx,
    prof: &Profile,
    exps: &[Exposure],
    buf: &mut Buffers,
) -> Option<u32> {
    let mut rng = stream_rng(ctx.seed, prof.id, STREAM_ACTIVITY);
    let cid = prof.id as i64;
    let days = ctx.days;
    let first = prof.signup_day.max(0) as u32;
    let new_signup = prof.signup_day >= 0;

    let logit0 = CONV_INTERCEPT + CONV_ENGAGEMENT * (prof.engagement / ENGAGEMENT_MEDIAN).ln();
    let p_base = sigmoid(logit0);
    let p_treat = if prof.uplift {
        sigmoid(logit0 + CONV_UPLIFT)
    } else {
        p_base
    };
    let trend_hazard = (-0.8 * prof.trend).exp();
    let growth = (prof.trend / f64::from(days)).exp();
    let mut trend_mult = (prof.trend * f64::from(first) / f64::from(days)).exp();
    // EWMA state, initialised at expectation on the first active day.
    let mut activity = prof.engagement * trend_mult;
    let mut order_freq = activity * p_base;

    let effect_us = TREATMENT_EFFECT_DAYS * US_PER_DAY;
    let attribution_us = ATTRIBUTION_WINDOW_DAYS * US_PER_DAY;
    let primary = prof.device;
    let others = match primary {
        DEV_MOBILE => [DEV_DESKTOP, DEV_TABLET],
        DEV_DESKTOP => [DEV_MOBILE, DEV_TABLET],
        _ => [DEV_MOBILE, DEV_DESKTOP],
    };
    let ln_pv_continue = PV_CONTINUE.ln();

    let mut ev = EventWriter {
        buf,
        cid,
        next_event: 0,
    };
    let mut next_session: i64 = 0;
    let mut next_order: i64 = 0;
    let mut starts = [0i64; MAX_SESSIONS_PER_DAY as usize];
    let mut churn = None;

    for d in first..days {
        if !(new_signup && d == first) {
            let h = (HAZARD_BASE
                * (0.3 + 2.0 * (-activity / 0.25).exp())
                * (0.5 + 1.5 * (-order_freq / 0.02).exp())
                * trend_hazard)
                .min(HAZARD_MAX);
            if unit(&mut rng) < h {
                churn = Some(d);
                break;
            }
        }
        let rate = prof.engagement * trend_mult * WEEKDAY_FACTOR[((ctx.wd0 + d) % 7) as usize];
        let mut n = poisson(&mut rng, rate);
        if new_signup && d == first {
            n = n.max(1);
        }
        let day_start = ctx.day_start_us(i64::from(d));
        let day_last = day_start + US_PER_DAY - 1;
        let starts = &mut starts[..n as usize];
        for s in starts.iter_mut() {
            let r = rng.next_u64();
            let u = unit32(r >> 32);
            let hour = ctx.hour_cum.iter().position(|&c| u < c).unwrap_or(23) as i64;
            *s = day_start + hour * US_PER_HOUR + scale32(r, US_PER_HOUR as u64) as i64;
        }
        starts.sort_unstable();

        let mut orders_today = 0u32;
        for &t0 in starts.iter() {
            let session = cid * SESSION_ID_STRIDE + next_session;
            next_session += 1;
            let r = rng.next_u64();
            let device = if unit32(r >> 32) < PRIMARY_DEVICE_SHARE {
                primary
            } else {
                others[(r & 1) as usize]
            };
            let landing = LANDING_LUT[((r >> 1) & 15) as usize];
            let treated = prof.uplift && active_treatment(exps, t0, effect_us).is_some();
            let p_conv = if treated { p_treat } else { p_base };
            let converts = unit(&mut rng) < p_conv;
            let u_pv = 1.0 - unit(&mut rng);
            let extra = ((u_pv.ln() / ln_pv_continue) as u32).min(PV_MAX_EXTRA);
            let n_pv = 1 + extra + if converts { CONVERTING_EXTRA_PV } else { 0 };

            ev.push(session, t0, ET_SESSION_START, landing, device);
            let mut t = t0;
            for _ in 0..n_pv {
                let r = rng.next_u64();
                t = (t + event_gap_us(r >> 32)).min(day_last);
                ev.push(
                    session,
                    t,
                    ET_PAGE_VIEW,
                    PV_PAGE_LUT[(r & 15) as usize],
                    device,
                );
            }
            let r = rng.next_u64();
            if converts || unit32(r) < CART_ABANDON_P {
                t = (t + event_gap_us(r >> 32)).min(day_last);
                ev.push(session, t, ET_ADD_TO_CART, PAGE_CART, device);
            }
            if converts {
                let r = rng.next_u64();
                t = (t + event_gap_us(r >> 32)).min(day_last);
                ev.push(session, t, ET_CHECKOUT, PAGE_CHECKOUT, device);

                let z = normal(&mut rng);
                let tenure_years = f64::from(d as i32 - prof.signup_day) / 365.25;
                let raw = prof.base_value
                    * (AMOUNT_SIGMA * z - 0.5 * AMOUNT_SIGMA * AMOUNT_SIGMA).exp()
                    * (1.0 + TENURE_VALUE_GROWTH * tenure_years);
                let amount = round_cents(raw).max(1.0);
                let unit_price = 25.0 + 40.0 * unit32(r);
                let items = (1.0 + (amount / unit_price).floor()).clamp(1.0, 99.0) as i32;
                let returned = unit(&mut rng) < 0.03 + 0.01 * f64::from(items.min(6));
                let campaign =
                    active_treatment(exps, t, attribution_us).map(|e| ctx.campaigns[e.campaign].id);
                let b = &mut *ev.buf;
                b.o_id.push(cid * ORDER_ID_STRIDE + next_order);
                b.o_customer.push(cid);
                b.o_ts.push(t);
                b.o_amount.push(amount);
                b.o_items.push(items);
                b.o_returned.push(returned);
                b.o_campaign.push(campaign);
                next_order += 1;
                orders_today += 1;
            }
        }
        activity = ACTIVITY_DECAY * activity + (1.0 - ACTIVITY_DECAY) * f64::from(n);
        order_freq =
            ORDER_FREQ_DECAY * order_freq + (1.0 - ORDER_FREQ_DECAY) * f64::from(orders_today);
        trend_mult *= growth;
    }
    churn
}

/// Builds a `Utf8` array from codes into a static dictionary (one allocation per buffer).
fn utf8_from_codes(
    codes: &[u8],
    dict: &[&'static str],
    column: &'static str,
) -> Result<StringArray, SynthError> {
    let mut counts = [0usize; 256];
    for &c in codes {
        counts[c as usize] += 1;
    }
    let bytes: usize = dict
        .iter()
        .enumerate()
        .map(|(i, s)| counts[i] * s.len())
        .sum();
    if bytes > i32::MAX as usize {
        return Err(SynthError::ChunkTooLarge { column, bytes });
    }
    let mut offsets: Vec<i32> = Vec::with_capacity(codes.len() + 1);
    let mut values: Vec<u8> = Vec::with_capacity(bytes);
    offsets.push(0);
    for &c in codes {
        values.extend_from_slice(dict[c as usize].as_bytes());
        offsets.push(values.len() as i32);
    }
    Ok(StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Buffer::from_vec(values),
        None,
    )?)
}

fn ts_array(v: Vec<i64>) -> TimestampMicrosecondArray {
    TimestampMicrosecondArray::from(v).with_timezone(TZ)
}

/// Generates chunk `chunk_idx` (customers `chunk_idx * chunk_customers + 1 ..`, see
/// [`chunk_customer_range`]). Pure and deterministic; chunks are independent.
pub fn generate_chunk(p: &SynthParams, chunk_idx: u64) -> Result<Chunk, SynthError> {
    validate(p)?;
    let range = chunk_customer_range(p, chunk_idx).ok_or(SynthError::ChunkOutOfRange {
        chunk_idx,
        n_chunks: n_chunks(p),
    })?;
    let ctx = Ctx::new(p);
    let profiles: Vec<Profile> = range.map(|id| draw_profile(&ctx, id)).collect();

    // Capacity estimate (only affects allocation, never the data).
    let mut exp_sessions = 0.0;
    for prof in &profiles {
        let active = f64::from(ctx.days) - f64::from(prof.signup_day.max(0));
        exp_sessions += prof.engagement * (1.0 + prof.trend.exp()) * 0.5 * active * 0.85;
    }
    let n_cust = profiles.len();
    let mut buf = Buffers::with_capacity(
        n_cust,
        (exp_sessions * 4.4) as usize + 64,
        (exp_sessions * 0.09) as usize + 16,
        n_cust * ctx.campaigns.len() / 3 + 16,
    );

    let mut exps: Vec<Exposure> = Vec::with_capacity(ctx.campaigns.len());
    for prof in &profiles {
        draw_exposures(&ctx, prof, &mut exps);
        let cid = prof.id as i64;
        for e in &exps {
            let c = &ctx.campaigns[e.campaign];
            buf.x_customer.push(cid);
            buf.x_campaign.push(c.id);
            buf.x_ts.push(e.ts);
            buf.x_group.push(u8::from(e.treatment));
            buf.x_channel.push(c.channel);
        }
        let churn = simulate_customer(&ctx, prof, &exps, &mut buf);

        buf.c_id.push(cid);
        buf.c_signup
            .push((ctx.e0 + i64::from(prof.signup_day)) as i32);
        buf.c_country.push(prof.country);
        buf.c_channel.push(prof.channel);
        buf.c_age.push(prof.age);
        buf.c_device.push(prof.device);
        buf.c_consent_email.push(prof.consent_email);
        buf.c_consent_ads.push(prof.consent_ads);
        buf.c_consent_analytics.push(prof.consent_analytics);
        buf.g_engagement.push(prof.engagement);
        buf.g_trend.push(prof.trend);
        buf.g_churn
            .push(churn.map(|d| (ctx.e0 + i64::from(d)) as i32));
        buf.g_uplift.push(prof.uplift);
        buf.g_base_value.push(prof.base_value);
    }

    let b = buf;
    let ids: ArrayRef = Arc::new(Int64Array::from(b.c_id));
    let customers = RecordBatch::try_new(
        schema(SynthTable::Customers),
        vec![
            Arc::clone(&ids),
            Arc::new(Date32Array::from(b.c_signup)),
            Arc::new(utf8_from_codes(&b.c_country, &COUNTRIES, "country")?),
            Arc::new(utf8_from_codes(
                &b.c_channel,
                &ACQ_CHANNELS,
                "acquisition_channel",
            )?),
            Arc::new(utf8_from_codes(&b.c_age, &AGE_BANDS, "age_band")?),
            Arc::new(utf8_from_codes(&b.c_device, &DEVICES, "device")?),
            Arc::new(BooleanArray::from(b.c_consent_email)),
            Arc::new(BooleanArray::from(b.c_consent_ads)),
            Arc::new(BooleanArray::from(b.c_consent_analytics)),
        ],
    )?;
    let events = RecordBatch::try_new(
        schema(SynthTable::Events),
        vec![
            Arc::new(Int64Array::from(b.e_id)) as ArrayRef,
            Arc::new(Int64Array::from(b.e_customer)),
            Arc::new(Int64Array::from(b.e_session)),
            Arc::new(ts_array(b.e_ts)),
            Arc::new(utf8_from_codes(&b.e_type, &EVENT_TYPES, "event_type")?),
            Arc::new(utf8_from_codes(&b.e_page, &PAGES, "page")?),
            Arc::new(utf8_from_codes(&b.e_device, &DEVICES, "device")?),
        ],
    )?;
    let orders = RecordBatch::try_new(
        schema(SynthTable::Orders),
        vec![
            Arc::new(Int64Array::from(b.o_id)) as ArrayRef,
            Arc::new(Int64Array::from(b.o_customer)),
            Arc::new(ts_array(b.o_ts)),
            Arc::new(Float64Array::from(b.o_amount)),
            Arc::new(Int32Array::from(b.o_items)),
            Arc::new(BooleanArray::from(b.o_returned)),
            Arc::new(Int64Array::from(b.o_campaign)),
        ],
    )?;
    let exposures = RecordBatch::try_new(
        schema(SynthTable::Exposures),
        vec![
            Arc::new(Int64Array::from(b.x_customer)) as ArrayRef,
            Arc::new(Int64Array::from(b.x_campaign)),
            Arc::new(ts_array(b.x_ts)),
            Arc::new(utf8_from_codes(&b.x_group, &GROUPS, "group")?),
            Arc::new(utf8_from_codes(
                &b.x_channel,
                &CAMPAIGN_CHANNELS,
                "channel",
            )?),
        ],
    )?;
    let ground_truth = RecordBatch::try_new(
        schema(SynthTable::GroundTruth),
        vec![
            ids,
            Arc::new(Float64Array::from(b.g_engagement)),
            Arc::new(Float64Array::from(b.g_trend)),
            Arc::new(Date32Array::from(b.g_churn)),
            Arc::new(BooleanArray::from(b.g_uplift)),
            Arc::new(Float64Array::from(b.g_base_value)),
        ],
    )?;
    Ok(Chunk {
        customers,
        events,
        orders,
        exposures,
        ground_truth,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::OnceLock;

    use arrow::array::{Array, AsArray};
    use arrow::compute::concat_batches;
    use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};

    use super::*;

    /// Every table of a dataset, concatenated over chunks.
    struct All {
        customers: RecordBatch,
        events: RecordBatch,
        orders: RecordBatch,
        exposures: RecordBatch,
        ground_truth: RecordBatch,
        campaigns: RecordBatch,
    }

    impl All {
        fn get(&self, t: SynthTable) -> &RecordBatch {
            match t {
                SynthTable::Customers => &self.customers,
                SynthTable::Events => &self.events,
                SynthTable::Orders => &self.orders,
                SynthTable::Campaigns => &self.campaigns,
                SynthTable::Exposures => &self.exposures,
                SynthTable::GroundTruth => &self.ground_truth,
            }
        }
    }

    fn params(customers: u64, days: u32, seed: u64, chunk: u64) -> SynthParams {
        SynthParams {
            customers,
            days,
            seed,
            chunk_customers: chunk,
            ..SynthParams::default()
        }
    }

    /// Generates all chunks (on two threads, as a caller would) and concatenates them.
    fn generate_all(p: &SynthParams) -> All {
        let n = n_chunks(p);
        let chunks: Vec<Chunk> = std::thread::scope(|s| {
            let odd = s.spawn(|| {
                (0..n)
                    .filter(|i| i % 2 == 1)
                    .map(|i| (i, generate_chunk(p, i).unwrap()))
                    .collect::<Vec<_>>()
            });
            let mut all: Vec<(u64, Chunk)> = (0..n)
                .filter(|i| i % 2 == 0)
                .map(|i| (i, generate_chunk(p, i).unwrap()))
                .collect();
            all.extend(odd.join().unwrap());
            all.sort_by_key(|(i, _)| *i);
            all.into_iter().map(|(_, c)| c).collect()
        });
        let cat = |t: SynthTable| {
            let parts: Vec<RecordBatch> =
                chunks.iter().map(|c| c.get(t).unwrap().clone()).collect();
            concat_batches(&schema(t), &parts).unwrap()
        };
        All {
            customers: cat(SynthTable::Customers),
            events: cat(SynthTable::Events),
            orders: cat(SynthTable::Orders),
            exposures: cat(SynthTable::Exposures),
            ground_truth: cat(SynthTable::GroundTruth),
            campaigns: campaigns(p).unwrap(),
        }
    }

    const BIG_CUSTOMERS: u64 = 5_000;
    const BIG_DAYS: u32 = 120;

    fn big_params() -> SynthParams {
        params(BIG_CUSTOMERS, BIG_DAYS, 7, 1_000)
    }

    fn big() -> &'static All {
        static BIG: OnceLock<All> = OnceLock::new();
        BIG.get_or_init(|| generate_all(&big_params()))
    }

    fn i64s<'a>(b: &'a RecordBatch, name: &str) -> &'a [i64] {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
    }
    fn f64s<'a>(b: &'a RecordBatch, name: &str) -> &'a [f64] {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
    }
    fn tss<'a>(b: &'a RecordBatch, name: &str) -> &'a [i64] {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .values()
    }
    fn strs(b: &RecordBatch, name: &str) -> Vec<String> {
        let a = b.column_by_name(name).unwrap().as_string::<i32>();
        a.iter().map(|s| s.unwrap().to_string()).collect()
    }
    fn bools(b: &RecordBatch, name: &str) -> Vec<bool> {
        let a = b.column_by_name(name).unwrap().as_boolean();
        a.iter().map(|v| v.unwrap()).collect()
    }
    /// churn_day as a day index relative to start_date.
    fn churn_days(all: &All, p: &SynthParams) -> Vec<Option<i64>> {
        let e0 = epoch_day(p.start_date);
        let a = all
            .ground_truth
            .column_by_name("churn_day")
            .unwrap()
            .as_primitive::<Date32Type>();
        a.iter().map(|v| v.map(|d| i64::from(d) - e0)).collect()
    }
    fn signup_days(all: &All, p: &SynthParams) -> Vec<i64> {
        let e0 = epoch_day(p.start_date);
        let a = all
            .customers
            .column_by_name("signup_date")
            .unwrap()
            .as_primitive::<Date32Type>();
        a.values().iter().map(|&d| i64::from(d) - e0).collect()
    }
    fn day_index(p: &SynthParams, ts: i64) -> i64 {
        ts.div_euclid(US_PER_DAY) - epoch_day(p.start_date)
    }
    fn pearson(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len() as f64;
        let mx = x.iter().sum::<f64>() / n;
        let my = y.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
        for (a, b) in x.iter().zip(y) {
            sxy += (a - mx) * (b - my);
            sxx += (a - mx) * (a - mx);
            syy += (b - my) * (b - my);
        }
        sxy / (sxx * syy).sqrt()
    }

    #[test]
    fn determinism_same_params_equal_and_seed_matters() {
        let p = params(300, 60, 11, 128);
        for i in 0..n_chunks(&p) {
            assert_eq!(
                generate_chunk(&p, i).unwrap(),
                generate_chunk(&p, i).unwrap()
            );
        }
        assert_eq!(campaigns(&p).unwrap(), campaigns(&p).unwrap());
        let q = SynthParams {
            seed: 12,
            ..p.clone()
        };
        let a = generate_chunk(&p, 0).unwrap();
        let b = generate_chunk(&q, 0).unwrap();
        assert_ne!(a.events, b.events);
        assert_ne!(a.customers, b.customers);
        assert_ne!(a.ground_truth, b.ground_truth);
    }

    #[test]
    fn chunk_size_does_not_change_data() {
        let a = generate_all(&params(300, 60, 5, 7));
        let b = generate_all(&params(300, 60, 5, 1_000));
        assert_eq!(n_chunks(&params(300, 60, 5, 7)), 43);
        for &t in SynthTable::all() {
            assert_eq!(a.get(t), b.get(t), "table {t} differs between chunk sizes");
        }
        assert!(a.events.num_rows() > 1_000);
    }

    #[test]
    fn schemas_conform() {
        let all = big();
        for &t in SynthTable::all() {
            assert_eq!(all.get(t).schema(), schema(t), "schema of {t}");
            assert_eq!(SynthTable::from_name(t.name()), Some(t));
        }
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            schema(SynthTable::Events)
                .field_with_name("event_ts")
                .unwrap()
                .data_type(),
            &ts
        );
        assert!(
            schema(SynthTable::Orders)
                .field_with_name("campaign_id")
                .unwrap()
                .is_nullable()
        );
        assert!(
            schema(SynthTable::GroundTruth)
                .field_with_name("churn_day")
                .unwrap()
                .is_nullable()
        );
        let chunk = generate_chunk(&params(10, 5, 1, 4), 2).unwrap();
        assert_eq!(chunk.customers.num_rows(), 2);
        assert_eq!(chunk.ground_truth.num_rows(), 2);
        for &t in SynthTable::all() {
            if let Some(b) = chunk.get(t) {
                assert_eq!(b.schema(), schema(t));
            }
        }
        assert_eq!(SynthTable::all().len(), 6);
        assert_eq!(SynthTable::GroundTruth.name(), "ground_truth");
        // Categorical domains.
        let dom = |b: &RecordBatch, c: &str, d: &[&str]| {
            for s in strs(b, c) {
                assert!(d.contains(&s.as_str()), "{c}: unexpected {s}");
            }
        };
        dom(&all.customers, "country", &COUNTRIES);
        dom(&all.customers, "acquisition_channel", &ACQ_CHANNELS);
        dom(&all.customers, "age_band", &AGE_BANDS);
        dom(&all.customers, "device", &DEVICES);
        dom(&all.events, "event_type", &EVENT_TYPES);
        dom(&all.events, "page", &PAGES);
        dom(&all.events, "device", &DEVICES);
        dom(&all.exposures, "group", &GROUPS);
        dom(&all.exposures, "channel", &CAMPAIGN_CHANNELS);
        dom(&all.campaigns, "channel", &CAMPAIGN_CHANNELS);
        for a in f64s(&all.orders, "amount") {
            assert!(*a >= 1.0 && (a * 100.0 - (a * 100.0).round()).abs() < 1e-6);
        }
    }

    #[test]
    fn validation_names_the_parameter() {
        let ok = SynthParams::default();
        assert!(validate(&ok).is_ok());
        let cases = [
            (
                SynthParams {
                    customers: 0,
                    ..ok.clone()
                },
                "customers",
            ),
            (
                SynthParams {
                    days: 0,
                    ..ok.clone()
                },
                "days",
            ),
            (
                SynthParams {
                    days: 3651,
                    ..ok.clone()
                },
                "days",
            ),
            (
                SynthParams {
                    chunk_customers: 0,
                    ..ok.clone()
                },
                "chunk_customers",
            ),
            (
                SynthParams {
                    start_date: NaiveDate::from_ymd_opt(1800, 1, 1).unwrap(),
                    ..ok.clone()
                },
                "start_date",
            ),
        ];
        for (p, name) in cases {
            let e = validate(&p).unwrap_err();
            assert!(matches!(e, SynthError::InvalidParam { param, .. } if param == name));
            assert!(e.to_string().contains(name), "{e}");
            assert!(generate_chunk(&p, 0).is_err());
            assert!(campaigns(&p).is_err());
        }
        assert_eq!(
            n_chunks(&SynthParams {
                chunk_customers: 0,
                ..ok.clone()
            }),
            0
        );
        assert!(matches!(
            generate_chunk(&ok, 1),
            Err(SynthError::ChunkOutOfRange {
                chunk_idx: 1,
                n_chunks: 1
            })
        ));
        // Smallest dataset works.
        let tiny = params(1, 1, 3, 1);
        let c = generate_chunk(&tiny, 0).unwrap();
        assert_eq!(c.customers.num_rows(), 1);
        assert_eq!(campaigns(&tiny).unwrap().num_rows(), 3);
    }

    #[test]
    fn referential_integrity_and_windows() {
        let p = big_params();
        let all = big();
        let ids: HashSet<i64> = i64s(&all.customers, "customer_id")
            .iter()
            .copied()
            .collect();
        assert_eq!(ids.len() as u64, BIG_CUSTOMERS);
        assert_eq!(
            i64s(&all.customers, "customer_id"),
            i64s(&all.ground_truth, "customer_id")
        );
        for t in [
            SynthTable::Events,
            SynthTable::Orders,
            SynthTable::Exposures,
        ] {
            for c in i64s(all.get(t), "customer_id") {
                assert!(ids.contains(c), "{t}: unknown customer {c}");
            }
        }
        let camp: HashSet<i64> = i64s(&all.campaigns, "campaign_id")
            .iter()
            .copied()
            .collect();
        let oc = all
            .orders
            .column_by_name("campaign_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        assert!(oc.null_count() > 0 && oc.null_count() < oc.len());
        for c in oc.iter().flatten() {
            assert!(camp.contains(&c));
        }
        for c in i64s(&all.exposures, "campaign_id") {
            assert!(camp.contains(c));
        }
        // Timestamps inside the window and after signup.
        let signup = signup_days(all, &p);
        for (t, col) in [
            (SynthTable::Events, "event_ts"),
            (SynthTable::Orders, "order_ts"),
        ] {
            let b = all.get(t);
            for (c, ts) in i64s(b, "customer_id").iter().zip(tss(b, col)) {
                let d = day_index(&p, *ts);
                assert!((0..i64::from(p.days)).contains(&d));
                assert!(d >= signup[(*c - 1) as usize]);
            }
        }
        // Exposures: within the campaign and after signup; ~80% treatment.
        let cs = all
            .campaigns
            .column_by_name("start_date")
            .unwrap()
            .as_primitive::<Date32Type>();
        let ce = all
            .campaigns
            .column_by_name("end_date")
            .unwrap()
            .as_primitive::<Date32Type>();
        for ((c, k), ts) in i64s(&all.exposures, "customer_id")
            .iter()
            .zip(i64s(&all.exposures, "campaign_id"))
            .zip(tss(&all.exposures, "exposure_ts"))
        {
            let day = ts.div_euclid(US_PER_DAY);
            let i = (*k - 1) as usize;
            assert!(day >= i64::from(cs.value(i)) && day <= i64::from(ce.value(i)));
            assert!(day - epoch_day(p.start_date) >= signup[(*c - 1) as usize]);
        }
        let groups = strs(&all.exposures, "group");
        let treat =
            groups.iter().filter(|g| *g == "treatment").count() as f64 / groups.len() as f64;
        assert!((0.76..0.84).contains(&treat), "treatment share {treat}");
    }

    #[test]
    fn no_activity_on_or_after_churn_day() {
        let p = big_params();
        let all = big();
        let churn = churn_days(all, &p);
        for (t, col) in [
            (SynthTable::Events, "event_ts"),
            (SynthTable::Orders, "order_ts"),
        ] {
            let b = all.get(t);
            for (c, ts) in i64s(b, "customer_id").iter().zip(tss(b, col)) {
                if let Some(cd) = churn[(*c - 1) as usize] {
                    assert!(day_index(&p, *ts) < cd, "{t} of customer {c} after churn");
                }
            }
        }
    }

    #[test]
    fn ids_unique_and_orders_match_checkouts() {
        let all = big();
        let ev = i64s(&all.events, "event_id");
        assert_eq!(ev.iter().collect::<HashSet<_>>().len(), ev.len());
        let oid = i64s(&all.orders, "order_id");
        assert_eq!(oid.iter().collect::<HashSet<_>>().len(), oid.len());
        // Each session id belongs to exactly one customer and has exactly one session_start.
        let types = strs(&all.events, "event_type");
        let mut owner: HashMap<i64, i64> = HashMap::new();
        let mut starts = 0usize;
        for ((s, c), t) in i64s(&all.events, "session_id")
            .iter()
            .zip(i64s(&all.events, "customer_id"))
            .zip(&types)
        {
            assert_eq!(*owner.entry(*s).or_insert(*c), *c);
            starts += usize::from(t == "session_start");
        }
        assert_eq!(owner.len(), starts);
        // Orders <-> checkout events.
        let mut checkouts: Vec<(i64, i64)> = i64s(&all.events, "customer_id")
            .iter()
            .zip(tss(&all.events, "event_ts"))
            .zip(&types)
            .filter(|(_, t)| *t == "checkout")
            .map(|((c, ts), _)| (*c, *ts))
            .collect();
        let mut orders: Vec<(i64, i64)> = i64s(&all.orders, "customer_id")
            .iter()
            .copied()
            .zip(tss(&all.orders, "order_ts").iter().copied())
            .collect();
        checkouts.sort_unstable();
        orders.sort_unstable();
        assert_eq!(checkouts, orders);
    }

    /// Statistical checks of the planted ground truth (5,000 customers, 120 days, seed 7).
    #[test]
    fn planted_ground_truth_is_visible_in_the_data() {
        let p = big_params();
        let all = big();
        let n = BIG_CUSTOMERS as usize;
        let days = i64::from(p.days);
        let churn = churn_days(all, &p);
        let signup = signup_days(all, &p);
        let trend = f64s(&all.ground_truth, "trend");
        let base = f64s(&all.ground_truth, "base_value");
        let uplift = bools(&all.ground_truth, "uplift_segment");

        // Churn is common.
        let churned = churn.iter().filter(|c| c.is_some()).count() as f64 / n as f64;
        println!("churned within window: {churned:.3}");
        assert!((0.20..=0.40).contains(&churned), "churn share {churned}");
        // ... and driven by the trend.
        let rate = |f: &dyn Fn(f64) -> bool| {
            let idx: Vec<usize> = (0..n).filter(|&i| f(trend[i])).collect();
            idx.iter().filter(|&&i| churn[i].is_some()).count() as f64 / idx.len() as f64
        };
        let (declining, flat) = (rate(&|t| t < -0.6), rate(&|t| t.abs() < 0.6));
        println!("churn share: declining {declining:.3}, flat {flat:.3}");
        assert!(declining > 1.5 * flat);

        // Churners are less active in the last 30 days of their activity.
        let mut sessions = vec![Vec::new(); n];
        for ((c, ts), t) in i64s(&all.events, "customer_id")
            .iter()
            .zip(tss(&all.events, "event_ts"))
            .zip(strs(&all.events, "event_type"))
        {
            if t == "session_start" {
                sessions[(*c - 1) as usize].push(day_index(&p, *ts));
            }
        }
        let (mut ch, mut nc) = (Vec::new(), Vec::new());
        for i in 0..n {
            let end = churn[i].unwrap_or(days);
            if signup[i].max(0) > end - 30 {
                continue;
            }
            let k = sessions[i]
                .iter()
                .filter(|&&d| d >= end - 30 && d < end)
                .count() as f64;
            if churn[i].is_some() {
                ch.push(k)
            } else {
                nc.push(k)
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "sessions in last 30 active days: churners {:.2} (n={}), non-churners {:.2} (n={})",
            mean(&ch),
            ch.len(),
            mean(&nc),
            nc.len()
        );
        assert!(mean(&ch) < 0.6 * mean(&nc));

        // "No order in the 60 days after day 60" has both classes in abundance.
        let mut has_future = vec![false; n];
        let mut orders_by_c: Vec<Vec<i64>> = vec![Vec::new(); n];
        for (c, ts) in i64s(&all.orders, "customer_id")
            .iter()
            .zip(tss(&all.orders, "order_ts"))
        {
            let i = (*c - 1) as usize;
            orders_by_c[i].push(*ts);
            if day_index(&p, *ts) >= 60 {
                has_future[i] = true;
            }
        }
        let pop: Vec<usize> = (0..n)
            .filter(|&i| signup[i] < 60 && churn[i].is_none_or(|d| d > 60))
            .collect();
        let pos = pop.iter().filter(|&&i| !has_future[i]).count() as f64 / pop.len() as f64;
        println!(
            "label 'no order in days 60..120' positive share {pos:.3} of {}",
            pop.len()
        );
        assert!((0.2..=0.8).contains(&pos));

        // Uplift: conversion within 14 days of exposure, treatment vs control, by segment.
        let mut conv = [[(0u32, 0u32); 2]; 2]; // [segment][treatment] -> (converted, total)
        let groups = strs(&all.exposures, "group");
        for ((c, ts), g) in i64s(&all.exposures, "customer_id")
            .iter()
            .zip(tss(&all.exposures, "exposure_ts"))
            .zip(&groups)
        {
            let i = (*c - 1) as usize;
            let hit = orders_by_c[i]
                .iter()
                .any(|&o| o >= *ts && o < ts + TREATMENT_EFFECT_DAYS * US_PER_DAY);
            let cell = &mut conv[usize::from(uplift[i])][usize::from(g == "treatment")];
            cell.0 += u32::from(hit);
            cell.1 += 1;
        }
        let r = |(a, b): (u32, u32)| f64::from(a) / f64::from(b);
        let diff_in = r(conv[1][1]) - r(conv[1][0]);
        let diff_out = r(conv[0][1]) - r(conv[0][0]);
        println!(
            "14-day conversion: segment T {:.3} (n={}) C {:.3} (n={}) diff {diff_in:.3}; \
             outside T {:.3} (n={}) C {:.3} (n={}) diff {diff_out:.3}",
            r(conv[1][1]),
            conv[1][1].1,
            r(conv[1][0]),
            conv[1][0].1,
            r(conv[0][1]),
            conv[0][1].1,
            r(conv[0][0]),
            conv[0][0].1
        );
        assert!(diff_in > 0.08, "uplift inside segment {diff_in}");
        assert!(diff_out.abs() < 0.04, "uplift outside segment {diff_out}");

        // Order value tracks base_value.
        let amounts = f64s(&all.orders, "amount");
        let b: Vec<f64> = i64s(&all.orders, "customer_id")
            .iter()
            .map(|c| base[(*c - 1) as usize])
            .collect();
        let r_val = pearson(amounts, &b);
        println!(
            "pearson(amount, base_value) = {r_val:.3} over {} orders",
            amounts.len()
        );
        assert!(r_val > 0.5);
        // Future value follows past value: mean amount in days 0..60 vs 60..120.
        let (mut past, mut fut) = (vec![(0.0, 0u32); n], vec![(0.0, 0u32); n]);
        for ((c, ts), a) in i64s(&all.orders, "customer_id")
            .iter()
            .zip(tss(&all.orders, "order_ts"))
            .zip(amounts)
        {
            let cell = if day_index(&p, *ts) < 60 {
                &mut past
            } else {
                &mut fut
            };
            cell[(*c - 1) as usize].0 += a;
            cell[(*c - 1) as usize].1 += 1;
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            if past[i].1 > 0 && fut[i].1 > 0 {
                x.push(past[i].0 / f64::from(past[i].1));
                y.push(fut[i].0 / f64::from(fut[i].1));
            }
        }
        let r_fut = pearson(&x, &y);
        println!(
            "pearson(mean past amount, mean future amount) = {r_fut:.3} over {} customers",
            x.len()
        );
        assert!(r_fut > 0.4);

        // Returns ~5-10%.
        let ret = bools(&all.orders, "returned");
        let rr = ret.iter().filter(|r| **r).count() as f64 / ret.len() as f64;
        println!("return rate {rr:.3}");
        assert!((0.04..=0.10).contains(&rr));
    }
}

-- Ledger schema v5 (issue 15): budget alerts and their webhooks. Portable
-- between SQLite and PostgreSQL like 0001.

-- The fractions of the hard limit whose crossing raises a "soft" alert, in
-- basis points, comma-separated (5000 = 50%). Budgets made before this
-- migration get the default 50%, 80%, 95%.
ALTER TABLE budgets ADD COLUMN alert_fractions TEXT NOT NULL DEFAULT '5000,8000,9500';

-- One row per alert raised. The unique key is the "once per crossing per
-- period" invariant: every writer inserts with ON CONFLICT DO NOTHING, in the
-- transaction of the usage that crossed the line, so two ledger replicas
-- cannot both raise one (docs/ledger.md, L21).
CREATE TABLE budget_alerts (
    id TEXT PRIMARY KEY,
    budget_id TEXT NOT NULL,
    period_start BIGINT NOT NULL,   -- start of the budget period it belongs to, us
    kind TEXT NOT NULL,             -- soft | hard | forecast
    fraction_bp BIGINT NOT NULL,    -- soft: the fraction crossed, basis points; hard: 10000; forecast: 0
    time BIGINT NOT NULL,
    scope_key TEXT NOT NULL,
    unit TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    spent BIGINT NOT NULL,          -- the budget's spent right after the crossing
    text TEXT NOT NULL,             -- the human sentence (the webhook's Slack `text`)
    UNIQUE (budget_id, period_start, kind, fraction_bp)
);
CREATE INDEX budget_alerts_budget ON budget_alerts (budget_id, time);

-- Where alerts go: one budget's alerts (budget_id) or every alert of an org's
-- budgets (org_id); exactly one of the two is set. The secret signs the
-- bodies (HMAC-SHA256); the deliverer needs it, so it is stored as given and
-- never logged nor returned after AddWebhook.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    budget_id TEXT NOT NULL,        -- '' for an org webhook
    org_id TEXT NOT NULL,           -- '' for a budget webhook
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_budget ON webhooks (budget_id);
CREATE INDEX webhooks_org ON webhooks (org_id);

-- One row per (alert, webhook): made in the alert's transaction, claimed by
-- one deliverer at a time (lease_until), retried with backoff (next_attempt_at).
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    alert_id TEXT NOT NULL,         -- '' for a test delivery
    body TEXT NOT NULL,             -- the JSON sent, fixed when the alert is raised
    state TEXT NOT NULL,            -- pending | delivered | failed
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, created_at);

-- The delivery log: every attempt, its HTTP status (0: no response) and error.
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    time BIGINT NOT NULL,
    status_code BIGINT NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Ledger schema v1. Portable between SQLite (>= 3.35) and PostgreSQL (>= 12):
-- only TEXT, BIGINT, INTEGER and DOUBLE PRECISION columns; instants are
-- BIGINT microseconds since the Unix epoch (UTC); money is BIGINT nano-USD;
-- flags are INTEGER 0/1 so both backends return the same Python values.

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    isolate_teams INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE teams (
    id TEXT PRIMARY KEY,            -- "<org>/<team>"
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,            -- "<org>/<team>/<email>"
    team_id TEXT NOT NULL REFERENCES teams(id),
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (team_id, email)
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,            -- public id "k_<hex>"
    secret_sha256 TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    team_id TEXT NOT NULL REFERENCES teams(id),
    user_id TEXT NOT NULL DEFAULT '',
    service_account TEXT NOT NULL DEFAULT '',
    allowed_tiers TEXT NOT NULL DEFAULT '',   -- comma separated; '' = all
    is_admin INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_team ON api_keys (team_id);

-- One row per (scope, unit, period); id is "budget:<kind>:<scope id>:<unit>:<period>".
CREATE TABLE budgets (
    id TEXT PRIMARY KEY,
    scope_key TEXT NOT NULL,        -- "<kind>:<scope id>"
    unit TEXT NOT NULL,             -- usd | tokens
    period TEXT NOT NULL,           -- daily | monthly | lifetime
    hard_limit BIGINT NOT NULL,
    soft_fraction DOUBLE PRECISION NOT NULL,
    period_start BIGINT NOT NULL,   -- start of the period `spent` belongs to
    spent BIGINT NOT NULL DEFAULT 0,
    soft_alerted_start BIGINT,      -- period_start whose soft alert was recorded
    updated_at BIGINT NOT NULL
);
CREATE INDEX budgets_scope ON budgets (scope_key);

CREATE TABLE prices (
    tier TEXT NOT NULL,
    version BIGINT NOT NULL,
    model TEXT NOT NULL,
    input_per_million BIGINT NOT NULL,
    output_per_million BIGINT NOT NULL,
    is_reference INTEGER NOT NULL DEFAULT 0,
    effective_from BIGINT NOT NULL,
    PRIMARY KEY (tier, version)
);

CREATE TABLE rate_limits (
    scope_key TEXT PRIMARY KEY,     -- "key:<id>" | "team:<id>"
    requests_per_minute BIGINT NOT NULL,
    tokens_per_minute BIGINT NOT NULL
);

CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    request_id TEXT UNIQUE,         -- NULL when the caller sent none
    key_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    project TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    price_version BIGINT NOT NULL,
    held_usd BIGINT NOT NULL,
    held_tokens BIGINT NOT NULL,
    state TEXT NOT NULL,            -- held | committed | released | expired
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    settled_at BIGINT,
    event_id TEXT
);
CREATE INDEX reservations_state_expiry ON reservations (state, expires_at);

-- Live holds. A hold counts only while expires_at > now, so a leaked hold stops
-- counting the instant it expires, whether or not the sweeper has run.
CREATE TABLE holds (
    reservation_id TEXT NOT NULL,
    budget_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, budget_id)
);
CREATE INDEX holds_budget_expiry ON holds (budget_id, expires_at, amount);

-- Append-only usage log. No prompt text, ever.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    day TEXT NOT NULL,              -- UTC "YYYY-MM-DD", for group-by day
    kind TEXT NOT NULL,
    request_id TEXT NOT NULL,
    reservation_id TEXT,
    org_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    project TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    counterfactual_cost BIGINT NOT NULL,
    cache_hit INTEGER NOT NULL,
    latency_ms BIGINT NOT NULL,
    price_version BIGINT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_org_time ON events (org_id, time);
-- At most one charge per reservation and one cache hit per request id: the
-- database itself refuses a double charge.
CREATE UNIQUE INDEX events_one_charge ON events (reservation_id) WHERE kind = 'charge';
CREATE UNIQUE INDEX events_one_cache_hit ON events (request_id) WHERE kind = 'cache_hit';

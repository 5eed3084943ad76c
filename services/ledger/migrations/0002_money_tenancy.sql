-- Ledger schema v2 (issue 12): overage, project-bound keys, per-key request
-- ids, one cache-hit event per served answer, persisted rate-limit state.
-- Portable between SQLite and PostgreSQL like 0001.

-- What a commit could not charge because a hard-limited budget had no room
-- left (cost + overage = the true cost; tokens likewise).
ALTER TABLE events ADD COLUMN overage BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN overage_tokens BIGINT NOT NULL DEFAULT 0;

-- A cache hit's idempotency key is the caller's id of the served answer,
-- scoped to the key: three answers under one request id are three records.
-- Earlier hits were one per request id, which becomes their record id.
ALTER TABLE events ADD COLUMN record_id TEXT;
UPDATE events SET record_id = request_id WHERE kind = 'cache_hit';
DROP INDEX events_one_cache_hit;
CREATE UNIQUE INDEX events_one_cache_hit ON events (key_id, record_id) WHERE kind = 'cache_hit';
CREATE INDEX events_cache_hit_request ON events (key_id, request_id) WHERE kind = 'cache_hit';

-- A key may be bound to a project tag ('' = unbound).
ALTER TABLE api_keys ADD COLUMN project TEXT NOT NULL DEFAULT '';

-- Request ids are unique per key, not globally: another key's ids are
-- independent and invisible. SQLite cannot drop a column's UNIQUE
-- constraint, so the table is rebuilt (on both backends, one script).
CREATE TABLE reservations_v2 (
    id TEXT PRIMARY KEY,
    request_id TEXT,                -- NULL when the caller sent none
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
INSERT INTO reservations_v2 (id, request_id, key_id, org_id, team_id, user_id, project, tier, model,
    price_version, held_usd, held_tokens, state, created_at, expires_at, settled_at, event_id)
SELECT id, request_id, key_id, org_id, team_id, user_id, project, tier, model,
    price_version, held_usd, held_tokens, state, created_at, expires_at, settled_at, event_id
FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_v2 RENAME TO reservations;
CREATE INDEX reservations_state_expiry ON reservations (state, expires_at);
CREATE UNIQUE INDEX reservations_key_request ON reservations (key_id, request_id);

-- GCRA state of the in-process rate limiter (no Redis), so a restarted
-- ledger remembers the minute it was in. tat = theoretical arrival time, us.
CREATE TABLE rate_limit_state (
    limit_id TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);

-- Embedding charges ("embedding" events, on the reserved tier "embeddings")
-- get the same database-level guard as charges: one per reservation.
CREATE UNIQUE INDEX events_one_embedding ON events (reservation_id) WHERE kind = 'embedding';

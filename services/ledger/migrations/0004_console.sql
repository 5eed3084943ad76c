-- Ledger schema v4 (issue 15, the FinOps console's foundation): key roles,
-- the audit log, hourly rollups. Portable between SQLite and PostgreSQL like 0001.

-- admin | finops | viewer | member. member is what every non-admin key was
-- before roles existed (the data plane, and Usage of its own org), so
-- existing keys keep exactly the access they had.
ALTER TABLE api_keys ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
UPDATE api_keys SET role = 'admin' WHERE is_admin = 1;

-- Append-only: the ledger only ever INSERTs here (docs/ledger.md, "Audit log").
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    actor TEXT NOT NULL,            -- "admin-token" | "key:<id>" | "bootstrap"
    action TEXT NOT NULL,           -- e.g. keys.create, budgets.set
    target TEXT NOT NULL,           -- the id of what changed
    before_json TEXT NOT NULL,      -- "null" when it did not exist
    after_json TEXT NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time, id);

-- One row per (hour, key, tier, model, project), kept in the same
-- transaction as every event insert (sql/rollups.py). org/team/user follow
-- from the key and are copied so reports never join.
CREATE TABLE rollups_hourly (
    hour BIGINT NOT NULL,           -- start of the UTC hour, us
    day TEXT NOT NULL,
    key_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    project TEXT NOT NULL,
    org_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    counterfactual_cost BIGINT NOT NULL,
    cache_hits BIGINT NOT NULL,
    overage BIGINT NOT NULL,
    cache_savings BIGINT NOT NULL,
    denials BIGINT NOT NULL,
    soft_alerts BIGINT NOT NULL,
    wrong_hits BIGINT NOT NULL,
    PRIMARY KEY (hour, key_id, tier, model, project)
);
CREATE INDEX rollups_org_hour ON rollups_hourly (org_id, hour);
CREATE INDEX rollups_team_hour ON rollups_hourly (team_id, hour);

-- The same sums per UTC day: a month's report reads ~30 rows per key and tier
-- instead of ~720 (the hourly rows serve the whole hours at a range's ends).
CREATE TABLE rollups_daily (
    day_start BIGINT NOT NULL,      -- start of the UTC day, us
    day TEXT NOT NULL,
    key_id TEXT NOT NULL,
    tier TEXT NOT NULL,
    model TEXT NOT NULL,
    project TEXT NOT NULL,
    org_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    requests BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    counterfactual_cost BIGINT NOT NULL,
    cache_hits BIGINT NOT NULL,
    overage BIGINT NOT NULL,
    cache_savings BIGINT NOT NULL,
    denials BIGINT NOT NULL,
    soft_alerts BIGINT NOT NULL,
    wrong_hits BIGINT NOT NULL,
    PRIMARY KEY (day_start, key_id, tier, model, project)
);
CREATE INDEX rollups_daily_org ON rollups_daily (org_id, day_start);
CREATE INDEX rollups_daily_team ON rollups_daily (team_id, day_start);

-- Backfill from the events already recorded (same sums as sql/rollups.py).
INSERT INTO rollups_hourly (hour, day, key_id, tier, model, project, org_id, team_id, user_id, requests,
    prompt_tokens, completion_tokens, cost, counterfactual_cost, cache_hits, overage, cache_savings,
    denials, soft_alerts, wrong_hits)
SELECT time - (time % 3600000000), MIN(day), key_id, tier, model, project, MIN(org_id), MIN(team_id), MIN(user_id),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN 1 ELSE 0 END),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN prompt_tokens ELSE 0 END),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN completion_tokens ELSE 0 END),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN cost ELSE 0 END),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN counterfactual_cost ELSE 0 END),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN cache_hit ELSE 0 END),
    SUM(CASE WHEN kind IN ('charge', 'embedding', 'cache_hit') THEN overage ELSE 0 END),
    SUM(CASE WHEN kind = 'cache_hit' THEN counterfactual_cost - cost ELSE 0 END),
    SUM(CASE WHEN kind = 'denied' THEN 1 ELSE 0 END),
    SUM(CASE WHEN kind = 'soft_alert' THEN 1 ELSE 0 END),
    SUM(CASE WHEN kind = 'wrong_hit' THEN 1 ELSE 0 END)
FROM events
WHERE kind IN ('charge', 'embedding', 'cache_hit', 'denied', 'soft_alert', 'wrong_hit')
GROUP BY time - (time % 3600000000), key_id, tier, model, project;

INSERT INTO rollups_daily (day_start, day, key_id, tier, model, project, org_id, team_id, user_id, requests,
    prompt_tokens, completion_tokens, cost, counterfactual_cost, cache_hits, overage, cache_savings,
    denials, soft_alerts, wrong_hits)
SELECT hour - (hour % 86400000000), MIN(day), key_id, tier, model, project, MIN(org_id), MIN(team_id), MIN(user_id),
    SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost), SUM(counterfactual_cost), SUM(cache_hits),
    SUM(overage), SUM(cache_savings), SUM(denials), SUM(soft_alerts), SUM(wrong_hits)
FROM rollups_hourly
GROUP BY hour - (hour % 86400000000), key_id, tier, model, project;

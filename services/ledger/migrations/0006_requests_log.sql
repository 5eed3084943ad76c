-- Ledger schema v5 (issue 15): the console's Requests log and prompt logging.
-- Portable between SQLite and PostgreSQL like 0001.

-- The HTTP status the caller got for the call: 200 served in full, 499 a
-- partial answer (the stream ended early; the detail's finish= says why),
-- 429 refused by a budget (a "denied" event). 0: not a request (signals).
-- Money columns are untouched: status is a label, never summed into cost.
ALTER TABLE events ADD COLUMN status BIGINT NOT NULL DEFAULT 0;
UPDATE events SET status = 200 WHERE kind IN ('charge', 'embedding', 'cache_hit');
UPDATE events SET status = 499 WHERE kind IN ('charge', 'embedding') AND detail LIKE '%finish=%';
UPDATE events SET status = 429 WHERE kind = 'denied';

-- The Requests page pages newest first by (time, id) within a scope; one
-- index per scope a role is narrowed to (all, org, team, key). The (time, id)
-- and (org_id, time, id) ones replace 0001's (time) and (org_id, time), which
-- they cover, so a usage event pays for two more index entries, not four.
DROP INDEX events_time;
DROP INDEX events_org_time;
CREATE INDEX events_time_id ON events (time, id);
CREATE INDEX events_org_time_id ON events (org_id, time, id);
CREATE INDEX events_team_time_id ON events (team_id, time, id);
CREATE INDEX events_key_time_id ON events (key_id, time, id);

-- Prompt logging is off unless an org's admin turns it on (SetOrgSettings).
ALTER TABLE orgs ADD COLUMN log_prompts INTEGER NOT NULL DEFAULT 0;

-- The prompt text of an event, only for orgs with log_prompts on, written in
-- the event's transaction. Apart from events so the usage log and its
-- indexes stay small and no prompt sits in a table every report reads.
CREATE TABLE event_prompts (
    event_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    prompt TEXT NOT NULL,
    truncated INTEGER NOT NULL
);

-- Budget escrow (ledger replicas on one PostgreSQL; docs/ledger.md "Escrow").
-- A slice is the part of a budget's remainder one replica may hold against
-- without touching the budget row. It counts against the budget in full
-- (with the charges folded into it) until its replica folds or returns it, or
-- any replica reaps it after expires_at. generation changes when another
-- replica reclaims its unused part, which voids holds placed in flight.
CREATE TABLE escrow_slices (
    budget_id TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    generation BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (budget_id, replica_id)
);
CREATE INDEX escrow_slices_expiry ON escrow_slices (expires_at);

-- Holds placed against a slice: one row per reservation and budget, written
-- by the replica that authorized it, settled by whichever replica commits
-- (charge set) or releases (row deleted); folded into budgets.spent by the
-- slice's owner or the reaper. Rows of different replicas never contend.
CREATE TABLE escrow_holds (
    reservation_id TEXT NOT NULL,
    budget_id TEXT NOT NULL,
    replica_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    charge BIGINT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, budget_id)
);
CREATE INDEX escrow_holds_slice ON escrow_holds (replica_id, budget_id);

-- The replica whose slices back this reservation's holds (NULL: central holds).
ALTER TABLE reservations ADD COLUMN escrow_replica TEXT;

-- Channel tier. Tables are prefixed channel_ so a deployment may share the
-- database with the ledger. Money is INTEGER whole won; times are unix
-- microseconds UTC, NULL for a time that has not happened yet. Checks repeat
-- the invariants the store code keeps, so a bug stops a write instead of
-- storing a state that never existed.

-- Per-account sync state. owner is '' for an account Apply or MarkStale met
-- before anyone asked core who owns it.
CREATE TABLE channel_accounts (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL DEFAULT '',
    synced_seq  INTEGER NOT NULL CHECK (synced_seq >= 0),
    balance     INTEGER NOT NULL CHECK (balance >= 0),
    stale       INTEGER NOT NULL CHECK (stale IN (0, 1)),
    synced_at   INTEGER,
    stale_since INTEGER,
    CHECK (stale = 0 OR stale_since IS NOT NULL)
) WITHOUT ROWID;
CREATE INDEX channel_accounts_owner ON channel_accounts (owner, id);

-- Core's entries as the channel applied them. WITHOUT ROWID clusters one
-- account's rows by seq, so a newest-first page is one range of the b-tree.
CREATE TABLE channel_history (
    account_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    entry_id      INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    counterparty  TEXT NOT NULL,
    transfer_id   TEXT NOT NULL DEFAULT '',
    external_ref  TEXT NOT NULL DEFAULT '',
    memo          TEXT NOT NULL,
    booked_at     INTEGER NOT NULL,
    PRIMARY KEY (account_id, seq)
) WITHOUT ROWID;

CREATE TABLE channel_transfers (
    id              TEXT PRIMARY KEY,
    customer        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_hash       TEXT NOT NULL,
    from_account    TEXT NOT NULL,
    to_account      TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    memo            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'failed')),
    reason          TEXT NOT NULL,
    deadline        INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    settled_at      INTEGER,
    UNIQUE (customer, idempotency_key),
    CHECK ((state = 'pending') = (settled_at IS NULL))
) WITHOUT ROWID;

-- The database itself allows one pending transfer per source account, so
-- channel processes sharing it cannot both start one.
CREATE UNIQUE INDEX channel_transfers_one_pending ON channel_transfers (from_account)
    WHERE state = 'pending';
-- The reconciler's scan of pending transfers past their deadline.
CREATE INDEX channel_transfers_due ON channel_transfers (deadline, id)
    WHERE state = 'pending';

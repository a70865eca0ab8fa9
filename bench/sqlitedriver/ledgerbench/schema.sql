-- Core ledger. Money is INTEGER whole won; times are unix microseconds UTC.
CREATE TABLE ledger_accounts (
    id         TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    balance    INTEGER NOT NULL CHECK (balance >= 0),
    last_seq   INTEGER NOT NULL CHECK (last_seq >= 0),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- position is the global commit order, the entry id and the outbox position.
CREATE TABLE ledger_entries (
    position      INTEGER PRIMARY KEY,
    account_id    TEXT NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    kind          TEXT NOT NULL,
    amount        INTEGER NOT NULL,
    balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
    counterparty  TEXT NOT NULL,
    transfer_id   TEXT NOT NULL DEFAULT '',
    external_ref  TEXT NOT NULL DEFAULT '',
    memo          TEXT NOT NULL,
    booked_at     INTEGER NOT NULL,
    UNIQUE (account_id, seq)
);

CREATE TABLE ledger_transfers (
    id           TEXT PRIMARY KEY,
    body_hash    TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    from_account TEXT NOT NULL,
    to_account   TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    from_seq     INTEGER NOT NULL,
    to_seq       INTEGER NOT NULL,
    decided_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ledger_deposits (
    external_ref TEXT PRIMARY KEY,
    body_hash    TEXT NOT NULL,
    account_id   TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    seq          INTEGER NOT NULL,
    booked_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE ledger_relay (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO ledger_relay (id, position) VALUES (1, 0);

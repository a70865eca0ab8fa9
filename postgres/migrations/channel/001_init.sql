-- The channel tier. Tables are prefixed channel_ so a deployment may share a
-- database with the ledger. Ids are plain ASCII (banksync.ValidID), so the
-- "C" collation loses nothing and orders ids as SQLite does. Checks repeat
-- the invariants the store code keeps, so a bug stops a write instead of
-- storing a state that never existed.

-- Per-account sync state. owner is '' for an account Apply or MarkStale met
-- before anyone asked core who owns it. Every Apply rewrites its row: free
-- space on each page (fillfactor) lets those updates stay HOT.
CREATE TABLE channel_accounts (
	id          text        COLLATE "C" PRIMARY KEY,
	owner       text        COLLATE "C" NOT NULL DEFAULT '',
	synced_seq  bigint      NOT NULL CHECK (synced_seq >= 0),
	balance     bigint      NOT NULL CHECK (balance >= 0),
	stale       boolean     NOT NULL,
	synced_at   timestamptz,
	stale_since timestamptz,
	CHECK (NOT stale OR stale_since IS NOT NULL)
) WITH (fillfactor = 70);
CREATE INDEX channel_accounts_owner ON channel_accounts (owner, id);

-- Core's entries as the channel applied them; reads are newest-first pages
-- of one account, a backward scan of the primary key.
CREATE TABLE channel_history (
	account_id    text        COLLATE "C" NOT NULL,
	seq           bigint      NOT NULL CHECK (seq >= 1),
	entry_id      bigint      NOT NULL,
	kind          text        NOT NULL,
	amount        bigint      NOT NULL,
	balance_after bigint      NOT NULL CHECK (balance_after >= 0),
	counterparty  text        NOT NULL,
	transfer_id   text        NOT NULL DEFAULT '',
	external_ref  text        NOT NULL DEFAULT '',
	memo          text        NOT NULL,
	booked_at     timestamptz NOT NULL,
	PRIMARY KEY (account_id, seq)
);

CREATE TABLE channel_transfers (
	id              text        COLLATE "C" PRIMARY KEY,
	customer        text        COLLATE "C" NOT NULL,
	idempotency_key text        COLLATE "C" NOT NULL,
	body_hash       text        NOT NULL,
	from_account    text        COLLATE "C" NOT NULL,
	to_account      text        COLLATE "C" NOT NULL,
	amount          bigint      NOT NULL CHECK (amount > 0),
	memo            text        NOT NULL,
	state           text        NOT NULL CHECK (state IN ('pending', 'completed', 'failed')),
	reason          text        NOT NULL,
	deadline        timestamptz NOT NULL,
	created_at      timestamptz NOT NULL,
	settled_at      timestamptz,
	CONSTRAINT channel_transfers_idempotency UNIQUE (customer, idempotency_key),
	CHECK ((state = 'pending') = (settled_at IS NULL))
);

-- The database itself allows one pending transfer per source account, so
-- channel processes sharing it cannot both start one.
CREATE UNIQUE INDEX channel_transfers_one_pending ON channel_transfers (from_account)
	WHERE state = 'pending';
-- The reconciler's scan of pending transfers past their deadline.
CREATE INDEX channel_transfers_due ON channel_transfers (deadline, id)
	WHERE state = 'pending';

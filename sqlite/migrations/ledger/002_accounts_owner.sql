-- The channel lists a customer's accounts by owner.
CREATE INDEX ledger_accounts_owner ON ledger_accounts (owner, id);

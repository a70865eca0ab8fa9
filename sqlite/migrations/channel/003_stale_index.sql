-- The reconciler's scan of stale accounts to repair, oldest first.
CREATE INDEX channel_accounts_stale ON channel_accounts (stale_since, id) WHERE stale = 1;

-- Counts MarkStale calls, so a sync clears the stale flag only if no failure
-- marked the account again while it ran.
ALTER TABLE channel_accounts ADD COLUMN stale_gen INTEGER NOT NULL DEFAULT 0;

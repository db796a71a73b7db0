-- Automatic pruning removes a protected couple's RECD files (screen
-- recordings), as CallREC's own trigger allows, and keeps the rest of it:
-- such an audit row names the file types removed.
ALTER TABLE synchrod.deletions ADD COLUMN cftypes text[];   -- NULL: all the call's media

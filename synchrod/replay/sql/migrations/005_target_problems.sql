-- Target paths a daemon found it cannot use (missing, not writable), as it
-- last measured them: `synchrod status` shows them from any node.
ALTER TABLE synchrod.daemons ADD COLUMN targets jsonb NOT NULL DEFAULT '{}';

-- The storage levels a daemon measured (SPEC §9): `synchrod storage` shows
-- them from any node.
ALTER TABLE synchrod.daemons ADD COLUMN storage jsonb NOT NULL DEFAULT '[]';

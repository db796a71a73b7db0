-- Lets synchrod prove a media file is unreferenced before removing it
-- (orphan repair, replaced media) without scanning every cfile.
CREATE INDEX IF NOT EXISTS synchrod_cfiles_cfpath ON callrec.cfiles (cfpath);

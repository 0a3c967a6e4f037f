-- A projection that gained a table in a new version must be rebuilt from its source before it
-- serves; the flag is set with the new table and cleared by the rebuild's swap, so a rebuild cut
-- short (a crash, a restart) is done again on the next start.
ALTER TABLE projection_ddl ADD COLUMN IF NOT EXISTS rebuild_pending boolean NOT NULL DEFAULT false;

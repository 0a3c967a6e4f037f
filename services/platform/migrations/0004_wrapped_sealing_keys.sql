-- Which key-encryption key wraps a sealing key (its id: the first 8 bytes of its SHA-256, hex);
-- NULL for a key stored as it is (no KEK configured).
ALTER TABLE sealing_keys ADD COLUMN IF NOT EXISTS wrapped_by text;

-- Ledger schema v3 (issue 20): prompt-cache rates on the price row, for
-- providers that bill cache reads and writes apart (Anthropic's
-- cache_read_input_tokens, cache_creation_input_tokens). NULL: the input
-- price. Portable between SQLite and PostgreSQL like 0001.
ALTER TABLE prices ADD COLUMN cache_read_per_million BIGINT;
ALTER TABLE prices ADD COLUMN cache_creation_per_million BIGINT;

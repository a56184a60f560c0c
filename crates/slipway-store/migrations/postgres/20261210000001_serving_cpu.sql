-- The CPU time each minute's model runs took, in microseconds: what cost per inference is
-- measured on (the delivery report). Minutes stored before it count none.
ALTER TABLE serving_minutes ADD COLUMN cpu_us BIGINT NOT NULL DEFAULT 0;

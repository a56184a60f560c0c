-- The share of a protected deployment's live traffic a candidate may answer before its
-- promotion is approved (percent).
ALTER TABLE promotion_policies ADD COLUMN max_unapproved_weight BIGINT NOT NULL DEFAULT 10;

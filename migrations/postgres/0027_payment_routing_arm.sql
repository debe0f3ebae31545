-- The success-rate mode's arm of a deposit (issue 16 item 3: holdout, explore or exploit),
-- NULL when the mode was off. A column, not only a field of the routing record, so the
-- uplift report counts arms by status without reading every record.
ALTER TABLE payments ADD COLUMN routing_arm TEXT;

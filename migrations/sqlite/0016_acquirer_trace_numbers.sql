-- ISO 8583 trace numbers of the acquirer connector (issue 20): the last STAN (field 11) and
-- RRN (field 37) sequence number handed out per terminal (field 41) and UTC day, so that a
-- restart never sends a number twice on one terminal in one day. One row per terminal and
-- day, bumped by one atomic upsert per message; rows of past days are kept for audits and
-- can be purged freely (they are never read again).
CREATE TABLE acquirer_trace_numbers (
    terminal_id TEXT NOT NULL,
    day TEXT NOT NULL,
    last_number BIGINT NOT NULL,
    PRIMARY KEY (terminal_id, day)
);

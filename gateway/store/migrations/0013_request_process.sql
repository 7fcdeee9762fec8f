-- The request process in phases (DESIGN §4.3): received -> approved (eligible) -> planned
-- (committed dates) -> live, or rejected; disputes of a rejection or a plan go to review.
-- Every step stays a row of onboarding_transitions; `event` names the steps that are not a
-- change of phase (a comment, an extension) and the kind of a review.
ALTER TABLE interop_requests ADD COLUMN confidential BIGINT NOT NULL DEFAULT 0;
ALTER TABLE interop_requests ADD COLUMN eligibility_due_at BIGINT;
ALTER TABLE interop_requests ADD COLUMN planned_at BIGINT;
ALTER TABLE interop_requests ADD COLUMN plan_next_update_at BIGINT;
ALTER TABLE interop_requests ADD COLUMN plan_live_at BIGINT;
ALTER TABLE interop_requests ADD COLUMN comment_due_at BIGINT;
ALTER TABLE interop_requests ADD COLUMN live_at BIGINT;
-- Art. 7(6): the deadline as extended (NULL: not extended); each extension's reason is a
-- transition row.
ALTER TABLE interop_requests ADD COLUMN extended_to BIGINT;
ALTER TABLE interop_requests ADD COLUMN disputed_from TEXT;
ALTER TABLE interop_requests ADD COLUMN review_due_at BIGINT;
ALTER TABLE interop_requests ADD COLUMN reviewed_at BIGINT;
ALTER TABLE onboarding_transitions ADD COLUMN event TEXT;

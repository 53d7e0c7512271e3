-- Names the next status change in the referral's transition history (shared/lifecycle.py's trigger).
SELECT set_config('app.transition_reason', $1, true)

-- Names the reason of the next status change in the referral's history (the trigger of migration 0005).
SELECT set_config('app.transition_reason', $1, true)

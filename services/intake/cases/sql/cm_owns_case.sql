-- Whether the calling case manager accepted this referral (migration's refnet_cm_owns_case()).
SELECT refnet_cm_owns_case($1)

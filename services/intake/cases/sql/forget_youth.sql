-- After shredding: the referral's blind indexes and matches go too (the function checks it is shredded).
SELECT refnet_forget_youth($1)

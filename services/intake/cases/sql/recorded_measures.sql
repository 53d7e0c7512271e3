-- Which of these measures ($3) were already recorded at this follow-up ($2).
SELECT measure FROM outcomes WHERE referral_id = $1 AND point = $2 AND measure = any($3::text[])

-- Every partner's name (organisations' own names, never a youth's).
SELECT id, name FROM partners

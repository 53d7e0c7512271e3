-- Notes about the data itself (e.g. that it is a synthetic, backdated demo), oldest first.
SELECT note FROM dataset_provenance ORDER BY id

-- Whether a provider named by id is a partner of the network.
SELECT 1 FROM partners WHERE id = $1
